"""End to end on `local`: single-component runs, quotas refused before Terraform, and the
image factory (build, reuse, deploy from the image, stale after an edit, ssh refused).

Real deployments are few (the machine is shared): one build, two deploys.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e import cli, deploy_json

# post_install takes 3 s and leaves a stamp naming the run it ran in; the deployment script
# publishes the stamp and every run whose install steps ran in this sandbox's history.
BAKED = """\
kind: component
name: baked
description: a component whose install steps are slow
image: debian-12
inputs:
  greeting: {default: hello}
outputs:
  stamp: {description: run whose post_install prepared this sandbox}
  installs: {description: runs whose install steps ran here}
  said: {description: the greeting}
scripts:
  pre_install: |
    echo "pre $SLIPSTREAM_DIID" >> install-runs
  post_install: |
    sleep 3
    echo "$SLIPSTREAM_DIID" > stamp
    echo "post $SLIPSTREAM_DIID" >> install-runs
  deployment: |
    ss-set stamp "$(cat stamp)"
    ss-set installs "$(tr '\\n' ' ' < install-runs)"
    ss-set said "$(ss-get greeting)"
"""


def write_root(root: Path, post_install_extra: str = "") -> None:
    text = BAKED
    if post_install_extra:
        text = text.replace("    sleep 3\n", f"    sleep 3\n    {post_install_extra}\n")
    root.mkdir(parents=True, exist_ok=True)
    (root / "baked.yaml").write_text(text, encoding="utf-8")


def json_of(home: Path, *args: str) -> dict[str, Any]:
    done = cli(home, *args, "--json")
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def runs_of(home: Path) -> list[str]:
    folder = home / "runs"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def deploy(home: Path, root: Path, *args: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    code, doc = deploy_json(home, "baked", "--root", str(root), *args)
    took = time.monotonic() - started
    assert code == 0 and doc["state"] == "Ready", doc
    return doc, took


def test_quota_refuses_before_terraform_and_changes_nothing(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "recipes"
    write_root(root)
    for read in (["images"], ["usage"], ["quota", "show"]):  # reading makes no home
        assert cli(home, *read, check=True).stdout.startswith("no ")
    assert not home.exists()
    remote = {"SLIPSTREAM_URL": "https://127.0.0.1:9", "SLIPSTREAM_TOKEN": "ss_x_y"}
    as_client = cli(home, "quota", "set", "tester", "local", "instances=1", env=remote)
    assert as_client.returncode == 2 and "not available as a client" in as_client.stderr
    done = cli(home, "quota", "set", "tester", "local", "instances=1", check=True)
    assert "instances=1" in done.stdout
    refused = cli(home, "deploy", "baked", "--root", str(root), "--multiplicity", "baked=2")
    assert refused.returncode == 1
    assert "quota `local instances` exceeded (quota 1, current 0, requested 2)" in refused.stderr
    assert runs_of(home) == []  # no run, so no run folder and no Terraform log in one
    assert not list(home.rglob("*.stderr")) and not list(home.rglob("*.tf.json"))
    shown = json_of(home, "quota", "show", "tester")
    assert shown["quotas"][0]["instances"] == 1
    assert shown["quotas"][0]["current"]["instances"] == 0
    bad = cli(home, "quota", "set", "tester", "local", "instances=lots")
    assert bad.returncode == 2 and "not a number" in bad.stderr
    unknown = cli(home, "quota", "set", "tester", "mars", "instances=3")
    assert unknown.returncode == 1 and "unknown cloud `mars`" in unknown.stderr


def test_ssh_cannot_build_and_nothing_starts(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "recipes"
    write_root(root)
    home.mkdir(mode=0o700)
    (home / "clouds.yaml").write_text(
        "clouds:\n  rack: {type: ssh, hosts: [{address: 10.9.9.9, user: ops}]}\n",
        encoding="utf-8",
    )
    done = cli(home, "build", "baked", "--cloud", "local", "--cloud", "rack", "--root", str(root))
    assert done.returncode == 1
    assert "cloud `rack` (type `ssh`) cannot make images" in done.stderr
    assert runs_of(home) == []  # refused before the local build started too


def test_build_reuse_deploy_from_image_and_stale_after_edit(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "recipes"
    write_root(root)
    home.mkdir(mode=0o700)
    (home / "clouds.yaml").write_text("clouds:\n  lab: {type: local}\n", encoding="utf-8")

    # Two clouds in one command, built in parallel (each its own build run and image).
    built = json_of(
        home, "build", "baked", "--cloud", "local", "--cloud", "lab", "--root", str(root)
    )["builds"]
    assert [b["cloud"] for b in built] == ["local", "lab"]
    assert all(not b["error"] and not b["reused"] for b in built), built
    assert built[0]["run"] != built[1]["run"] and built[0]["image"] != built[1]["image"]
    first = built[0]
    assert first["image"].startswith("sha256:") and not first["reused"]
    build_run = first["run"]
    status = json_of(home, "status", build_run)
    assert status["state"] == "Done"  # the build machine is destroyed
    assert not (home / "runs" / build_run / "sandboxes").exists()

    again = cli(home, "build", "baked", "--cloud", "local", "--root", str(root), check=True)
    assert f"reusing image {first['image']}" in again.stdout
    assert len(runs_of(home)) == 2  # the no-op started nothing

    listed = json_of(home, "images", "--component", "baked", "--root", str(root))["images"]
    assert sorted((i["cloud"], i["image"], i["current"]) for i in listed) == sorted(
        [("local", first["image"], True), ("lab", built[1]["image"], True)]
    )
    assert all(i["size_bytes"] > 0 for i in listed)

    # A single-component run on the image: the install steps do not run here.
    doc, from_image_s = deploy(home, root, "--input", "greeting=bonjour")
    params = doc["params"]
    try:
        assert params["baked.1:said"] == "bonjour"
        assert params["baked.1:stamp"] == build_run  # prepared by the build, not by this run
        assert params["baked.1:installs"].split() == ["pre", build_run, "post", build_run]
        assert params["baked.1:image.id"] == first["image"]
        shown = cli(home, "status", doc["id"], check=True).stdout
        assert f"baked.1: booted from built image {first['image']}" in shown
        images = [e for e in doc["events"] if e["kind"] == "image"]
        assert images and first["image"] in images[0]["message"]
    finally:
        cli(home, "destroy", doc["id"], check=True)

    # Editing post_install changes the hash: the image is stale, install steps run again.
    write_root(root, post_install_extra="echo edited >> notes")
    listed = json_of(home, "images", "--component", "baked", "--root", str(root))["images"]
    assert [i["current"] for i in listed] == [False, False]
    doc, fresh_s = deploy(home, root)
    try:
        params = doc["params"]
        assert params["baked.1:stamp"] == doc["id"]
        assert params["baked.1:installs"].split() == ["pre", doc["id"], "post", doc["id"]]
        assert params["baked.1:image.id"] == "debian-12"
        assert "baked.1:image.built" not in params
        assert not [e for e in doc["events"] if e["kind"] == "image"]
    finally:
        cli(home, "destroy", doc["id"], check=True)
    print(f"deploy from the image: {from_image_s:.1f}s; with install steps: {fresh_s:.1f}s")

    usage = json_of(home, "usage", "--user", "tester")["usage"]
    assert [(u["cloud"], u["size"], u["instances"]) for u in usage] == [
        ("lab", "small", 1),  # its build machine
        ("local", "small", 3),  # a build machine and two deploys
    ]
    assert all(u["hours"] > 0 for u in usage)


def test_a_failed_build_records_nothing_and_destroys_its_machine(tmp_path: Path) -> None:
    from tests.e2e import marked_processes

    home, root = tmp_path / "home", tmp_path / "recipes"
    write_root(root, post_install_extra="echo broken >&2; exit 7")
    done = cli(home, "build", "baked", "--cloud", "local", "--root", str(root), "--json")
    assert done.returncode == 1, done.stderr
    (outcome,) = json.loads(done.stdout)["builds"]
    assert outcome["error"] and not outcome["image"]
    status = json_of(home, "status", outcome["run"])
    assert status["state"] in ("Aborted", "Done")
    assert not (home / "runs" / outcome["run"] / "sandboxes").exists()
    assert marked_processes(outcome["run"]) == []
    assert json_of(home, "images")["images"] == []
