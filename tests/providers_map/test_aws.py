"""The `aws` mapping renders shipped and custom deployments into `hashicorp/aws` roots, and
the shared agent bootstrap script really installs and starts the agent."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.canonical import dumps
from engine.compile.compiler import cloud_roots, compile_deployment
from engine.errors import CloudError, RecipeInvalid
from engine.recipes.clouds import parse_clouds_text
from engine.recipes.loader import RecipeLoader
from engine.recipes.overrides import Overrides
from providers_map import mapping_for
from providers_map.aws import MAPPING
from providers_map.base import COMMON_VARIABLES, escape
from providers_map.bootstrap import AGENT_VARIABLES, TEMPLATE, shell_quoted, user_data
from providers_map.catalog import native_images

CLOUDS = "clouds:\n  aws-eu: {type: aws, region: eu-west-1}\n"
EVIL = '${file("/etc/passwd")} %{ if true }x%{ endif } $${already} $$${x}'
# What our own interpolations start with; anything else live in the output came from a user.
OURS = (
    "${var.",
    "${each.",
    "${data.",
    "${aws_",
    "${openstack_",
    "${local.",
    "${merge(",
    "${replace(",
    "${{for ",
    "${k}",
)


def compile_on(
    cloud: str, deployment: str | Path, clouds_yaml: str = CLOUDS, root: Path | None = None
) -> dict[str, Any]:
    """``deployment`` with every node on ``cloud``: that cloud's Terraform document."""
    cfg = parse_clouds_text(clouds_yaml)
    nodes = RecipeLoader(root, cfg).deployment(deployment).nodes
    overrides = Overrides.parse(clouds=[f"{n}={cloud}" for n in nodes])
    docs = compile_deployment(RecipeLoader(root, cfg).deployment(deployment, overrides), cfg)
    assert list(docs) == [cloud]
    return docs[cloud]


def write_recipes(root: Path, component: str, description: str = "custom") -> Path:
    """A recipe root with component ``box`` (body ``component``) and deployment ``custom``."""
    root.mkdir(exist_ok=True)
    (root / "box.yaml").write_text(f"kind: component\nname: box\n{component}", encoding="utf-8")
    (root / "custom.yaml").write_text(
        f"kind: deployment\nname: custom\ndescription: {json.dumps(description)}\n"
        "nodes:\n  box:\n    component: box\n    multiplicity: 2\n",
        encoding="utf-8",
    )
    return root


def live_templates(value: Any) -> list[str]:
    """Every template sequence Terraform would evaluate in the strings of ``value``, up to
    its first ``}``."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += live_templates(key) + live_templates(item)
    elif isinstance(value, list):
        for item in value:
            found += live_templates(item)
    elif isinstance(value, str):
        i = 0
        while i < len(value):
            if value.startswith(("$${", "%%{"), i):
                i += 3
            elif value.startswith(("${", "%{"), i):
                found.append(value[i : value.find("}", i) + 1])
                i += 2
            else:
                i += 1
    return found


# -- shipped deployments ---------------------------------------------------------------


def test_webapp_structure() -> None:
    doc = compile_on("aws-eu", "webapp")
    assert doc["terraform"]["required_providers"] == {
        "aws": {"source": "hashicorp/aws", "version": "~> 6.25"}
    }
    assert doc["provider"] == {"aws": {"region": "eu-west-1"}}
    assert doc["variable"] == {**COMMON_VARIABLES, **AGENT_VARIABLES}
    instances = doc["resource"]["aws_instance"]
    assert list(instances) == ["db", "web", "lb"]
    assert sorted(instances["web"]["for_each"]) == ["1", "2"]
    assert instances["web"]["for_each"]["2"] == {"instance": "web.2", "index": 2}
    assert "count" not in dumps(doc)
    assert {n: i["instance_type"] for n, i in instances.items()} == {
        "db": "t3.small",
        "web": "t3.small",
        "lb": "t3.small",
    }
    assert instances["db"]["ami"] == "${data.aws_ami.debian-12.id}"
    assert instances["web"]["ami"] == "${data.aws_ami.ubuntu-22-04.id}"
    assert instances["web"]["root_block_device"]["volume_size"] == 10
    assert instances["web"]["vpc_security_group_ids"] == ["${aws_security_group.web.id}"]
    assert instances["web"]["associate_public_ip_address"] is True
    assert "subnet_id" not in instances["web"] and "key_name" not in instances["web"]
    tags = instances["web"]["tags"]
    assert tags["Name"] == "webapp-web-${each.key}"
    assert tags["slipstream-run"] == "${var.run_id}"
    assert tags["slipstream-node"] == "web"
    assert tags["slipstream-instance"] == "${each.value.instance}"
    assert tags["slipstream-service"] == "${var.service}"


def test_webapp_amis_come_from_the_catalog() -> None:
    amis = compile_on("aws-eu", "webapp")["data"]["aws_ami"]
    assert sorted(amis) == ["debian-12", "ubuntu-22-04"]
    row = native_images()["ubuntu-22.04"]["aws"]
    assert amis["ubuntu-22-04"] == {
        "most_recent": True,
        "owners": [row["owner"]],
        "filter": [{"name": "name", "values": [row["name"]]}],
    }


def test_security_groups_open_component_ports_and_ssh() -> None:
    groups = compile_on("aws-eu", "webapp")["resource"]["aws_security_group"]
    opened = {
        node: [
            (r["from_port"], r["to_port"], r["protocol"], r["cidr_blocks"])
            for r in group["ingress"]
        ]
        for node, group in groups.items()
    }
    world = ["0.0.0.0/0"]
    assert opened == {
        "db": [(22, 22, "tcp", world), (5480, 5480, "tcp", world)],
        "web": [(22, 22, "tcp", world), (8080, 8080, "tcp", world)],
        "lb": [(22, 22, "tcp", world), (80, 80, "tcp", world)],
    }
    assert [(r["protocol"], r["cidr_blocks"]) for r in groups["web"]["egress"]] == [("-1", world)]
    assert groups["web"]["name_prefix"] == "webapp-web-${var.run_id}-"
    assert "vpc_id" not in groups["web"]


def test_cluster_structure() -> None:
    doc = compile_on("aws-eu", "cluster")
    instances = doc["resource"]["aws_instance"]
    assert sorted(instances["worker"]["for_each"]) == ["1", "2", "3"]
    assert instances["worker"]["instance_type"] == "t3.medium"
    assert instances["head"]["root_block_device"]["volume_size"] == 20
    assert [r["from_port"] for r in doc["resource"]["aws_security_group"]["head"]["ingress"]] == [
        22
    ]
    assert list(doc["data"]["aws_ami"]) == ["debian-12"]


def test_outputs_have_address_and_id_per_instance() -> None:
    value = compile_on("aws-eu", "webapp")["output"]["instances"]["value"]
    assert (
        '{for k, r in aws_instance.web : "web.${k}" => {address = r.public_ip, id = r.id}}' in value
    )
    private = compile_on("aws-eu", "webapp", CLOUDS.replace("}", ", associate_public_ip: false}"))
    assert "address = r.private_ip" in private["output"]["instances"]["value"]
    assert private["resource"]["aws_instance"]["db"]["associate_public_ip_address"] is False


def test_rendering_is_deterministic() -> None:
    for name in ("webapp", "cluster"):
        assert dumps(compile_on("aws-eu", name)) == dumps(compile_on("aws-eu", name))


# -- agent tokens ------------------------------------------------------------------------


def test_tokens_are_a_sensitive_variable_never_a_literal() -> None:
    doc = compile_on("aws-eu", "webapp")
    assert doc["variable"]["agent_tokens"]["sensitive"] is True
    assert doc["variable"]["agent_tokens"]["type"] == "map(string)"
    for instance in doc["resource"]["aws_instance"].values():
        token_lines = [
            line for line in instance["user_data"].splitlines() if line.startswith("TOKEN=")
        ]
        assert token_lines == [f"TOKEN={shell_quoted('var.agent_tokens[each.value.instance]')}"]
    assert "agent_tokens" not in json.dumps(doc["output"])


def test_user_data_interpolates_only_the_six_values() -> None:
    script = user_data()
    assert "__SLIPSTREAM_" not in script
    expected = {
        shell_quoted(e)[1:-1]
        for e in (
            "var.server_url",
            "var.run_id",
            "each.value.instance",
            "var.agent_tokens[each.value.instance]",
            "var.server_fingerprint",
            "var.agent_sha256",
        )
    }
    assert set(live_templates(script)) == expected
    assert "$${SERVER%/}/agent/v1/agent.py" in script
    assert len(script.encode()) < 16 * 1024  # EC2's user data limit


# -- settings and overrides ---------------------------------------------------------------


def test_network_settings() -> None:
    clouds = (
        "clouds:\n  aws-eu: {type: aws, region: eu-west-1, subnet_id: subnet-9, key_name: ops}\n"
    )
    doc = compile_on("aws-eu", "webapp", clouds)
    web = doc["resource"]["aws_instance"]["web"]
    assert (web["subnet_id"], web["key_name"]) == ("subnet-9", "ops")
    assert doc["data"]["aws_subnet"] == {"selected": {"id": "subnet-9"}}
    assert (
        doc["resource"]["aws_security_group"]["web"]["vpc_id"]
        == "${data.aws_subnet.selected.vpc_id}"
    )
    with_vpc = compile_on("aws-eu", "webapp", clouds.replace("}", ", vpc_id: vpc-1}"))
    assert with_vpc["resource"]["aws_security_group"]["web"]["vpc_id"] == "vpc-1"
    assert "aws_subnet" not in with_vpc["data"]


@pytest.mark.parametrize(
    "entry",
    [
        "{type: aws}",
        "{type: aws, region: eu-west}",
        "{type: aws, region: eu-west-1, vpc_id: v}",
        "{type: aws, region: eu-west-1, zone: a}",
    ],
)
def test_bad_settings_are_refused(entry: str) -> None:
    with pytest.raises(RecipeInvalid):
        parse_clouds_text(f"clouds:\n  aws-eu: {entry}\n")


def test_images_setting_overrides_the_catalog() -> None:
    clouds = (
        "clouds:\n  aws-eu:\n    type: aws\n    region: eu-west-1\n    images:\n"
        "      debian-12: {owner: '111122223333', name: 'golden-debian-*'}\n"
    )
    amis = compile_on("aws-eu", "webapp", clouds)["data"]["aws_ami"]
    assert amis["debian-12"]["owners"] == ["111122223333"]
    assert amis["debian-12"]["filter"] == [{"name": "name", "values": ["golden-debian-*"]}]
    assert amis["ubuntu-22-04"]["owners"] == [native_images()["ubuntu-22.04"]["aws"]["owner"]]


def test_custom_size_takes_a_bigger_type(tmp_path: Path) -> None:
    root = write_recipes(tmp_path, "image: debian-12\nsize: {cpu: 16, ram_gb: 48, disk_gb: 60}\n")
    box = compile_on("aws-eu", "custom", root=root)["resource"]["aws_instance"]["box"]
    assert box["instance_type"] == "m5.4xlarge"
    assert box["root_block_device"]["volume_size"] == 60


def test_override_instance_type_volume_and_tags(tmp_path: Path) -> None:
    root = write_recipes(
        tmp_path,
        (
            "image: ubuntu-24.04\nclouds:\n  aws:\n    instance_type: c7i.large\n"
            "    volume_size: 33\n"
            f"    tags: {{team: {json.dumps(EVIL)}, Name: mybox, {json.dumps(EVIL)}: k}}\n"
        ),
    )
    box = compile_on("aws-eu", "custom", root=root)["resource"]["aws_instance"]["box"]
    assert box["instance_type"] == "c7i.large"
    assert box["root_block_device"]["volume_size"] == 33
    assert (
        box["tags"]["team"]
        == escape(EVIL)
        == ('$${file("/etc/passwd")} %%{ if true }x%%{ endif } $$${already} $$$${x}')
    )
    assert box["tags"][escape(EVIL)] == "k"
    assert box["tags"]["Name"] == "mybox"
    assert box["tags"]["slipstream-node"] == "box"


def test_override_tags_cannot_take_reserved_names(tmp_path: Path) -> None:
    root = write_recipes(
        tmp_path, "image: debian-12\nclouds:\n  aws:\n    tags: {slipstream-run: mine}\n"
    )
    with pytest.raises(CloudError, match="tags `slipstream-run` is reserved"):
        compile_on("aws-eu", "custom", root=root)


def test_bad_overrides_are_refused_at_load(tmp_path: Path) -> None:
    root = write_recipes(tmp_path, "image: debian-12\nclouds:\n  aws: {instance_type: 5, x: 1}\n")
    with pytest.raises(RecipeInvalid) as err:
        compile_on("aws-eu", "custom", root=root)
    assert "instance_type" in str(err.value) and "unknown key `x`" in str(err.value)


def test_user_text_is_never_evaluated(tmp_path: Path) -> None:
    root = write_recipes(
        tmp_path,
        f"description: {json.dumps(EVIL)}\nimage: debian-12\nclouds:\n  aws:\n"
        f"    tags: {{note: {json.dumps(EVIL)}}}\n",
        description=EVIL,
    )
    doc = compile_on("aws-eu", "custom", root=root)
    assert doc["resource"]["aws_instance"]["box"]["tags"]["slipstream-description"] == escape(EVIL)
    live = live_templates(doc)
    assert live
    assert [t for t in live if not t.startswith(OURS)] == []
    assert [t for t in live if "passwd" in t or "already" in t] == []


# -- check ------------------------------------------------------------------------------


def test_impossible_size_is_refused(tmp_path: Path) -> None:
    root = write_recipes(tmp_path, "image: debian-12\nsize: {cpu: 512, ram_gb: 4096}\n")
    with pytest.raises(CloudError) as err:
        compile_on("aws-eu", "custom", root=root)
    message = str(err.value)
    assert "cloud `aws-eu`" in message and "node `box`" in message
    assert "512 vCPUs and 4096 GiB" in message and "instance_type" in message


def test_impossible_size_with_an_instance_type_override_is_fine(tmp_path: Path) -> None:
    root = write_recipes(
        tmp_path,
        "image: debian-12\nsize: {cpu: 512, ram_gb: 4096}\n"
        "clouds:\n  aws-eu: {instance_type: u-24tb1.metal}\n",
    )
    box = compile_on("aws-eu", "custom", root=root)["resource"]["aws_instance"]["box"]
    assert box["instance_type"] == "u-24tb1.metal"


def test_check_names_an_image_without_ami(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_clouds_text(CLOUDS)
    dep = RecipeLoader(None, cfg).deployment("webapp", Overrides.parse(clouds=["db=aws-eu"]))
    root = cloud_roots(dep, cfg)["aws-eu"]
    assert MAPPING.check(root) == []
    monkeypatch.setattr("providers_map.aws.image_lookup", lambda *args: None)
    assert MAPPING.check(root) == [
        "node `db`: image `debian-12` has no AMI on AWS; add it under `images` in the "
        "cloud's settings"
    ]


# -- snapshot ---------------------------------------------------------------------------


def test_snapshot_block() -> None:
    block = MAPPING.snapshot('aws_instance.web["2"]', "slipstream-web-0a1b2c")
    assert block == {
        "aws_ami_from_instance": {
            "slipstream-web-0a1b2c": {
                "name": "slipstream-web-0a1b2c",
                "source_instance_id": '${aws_instance.web["2"].id}',
                "tags": {"slipstream-run": "${var.run_id}"},
            }
        }
    }
    assert (
        MAPPING.snapshot("aws_instance.web", "x${y}")["aws_ami_from_instance"]["x--y-"]["name"]
        == "x$${y}"
    )


@pytest.mark.parametrize(
    "address", ["web", 'aws_instance.web["1"].id}${file("x")', "terraform_data.web"]
)
def test_snapshot_refuses_other_addresses(address: str) -> None:
    with pytest.raises(ValueError):
        MAPPING.snapshot(address, "image")


def test_registered() -> None:
    assert mapping_for("aws") is MAPPING


# -- the bootstrap script, for real ---------------------------------------------------------


def test_template_is_valid_posix_sh() -> None:
    done = subprocess.run(["sh", "-n"], input=TEMPLATE, text=True, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


SERVER_TOKEN = "t'o\"k$en ${x} `id`"
FAKE_AGENT = (
    "import json, os, stat, sys\n"
    "env_file = sys.argv[sys.argv.index('--env-file') + 1]\n"
    "here = os.path.dirname(os.path.abspath(__file__))\n"
    "record = {'argv': sys.argv[1:], 'cwd': os.getcwd(),\n"
    "          'env': open(env_file).read(), 'mode': stat.S_IMODE(os.stat(env_file).st_mode)}\n"
    "json.dump(record, open(os.path.join(here, 'ran.part'), 'w'))\n"
    "os.replace(os.path.join(here, 'ran.part'), os.path.join(here, 'ran.json'))\n"
)
PIN = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def rendered_script(tmp_path_factory: pytest.TempPathFactory, run_tf) -> str:  # type: ignore[no-untyped-def]
    """The user data of instance web.1 as Terraform itself renders it."""
    root = tmp_path_factory.mktemp("userdata")
    doc = {
        "variable": {**COMMON_VARIABLES, **AGENT_VARIABLES},
        "resource": {
            "terraform_data": {
                "web": {
                    "for_each": {"1": {"instance": "web.1", "index": 1}},
                    "input": user_data(),
                }
            }
        },
        "output": {"script": {"sensitive": True, "value": '${terraform_data.web["1"].output}'}},
    }
    (root / "main.tf.json").write_text(dumps(doc), encoding="utf-8")
    (root / "values.tfvars.json").write_text(
        json.dumps(
            {
                "run_id": "run-7",
                "server_url": "http://127.0.0.1:PORT/base/",
                "server_fingerprint": PIN,
                "agent_sha256": hashlib.sha256(FAKE_AGENT.encode()).hexdigest(),
                "agent_tokens": {"web.1": SERVER_TOKEN, "web.2": "other"},
            }
        ),
        encoding="utf-8",
    )
    run_tf(root, "init", "-input=false", "-no-color", "-backend=false")
    run_tf(
        root, "apply", "-input=false", "-no-color", "-auto-approve", "-var-file=values.tfvars.json"
    )
    out = json.loads(run_tf(root, "output", "-json", "-no-color").stdout)
    script = out["script"]["value"]
    assert isinstance(script, str)
    return script


@pytest.fixture
def agent_server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server offering a fake agent that records how it was started."""
    files = tmp_path / "www"
    (files / "base" / "agent" / "v1").mkdir(parents=True)
    (files / "base" / "agent" / "v1" / "agent.py").write_text(FAKE_AGENT, encoding="utf-8")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(files)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _tool_dir(path: Path, tools: list[str]) -> Path:
    path.mkdir()
    for tool in ["mkdir", "chmod", "mv", "rm", "nohup", "setsid", "sleep", *tools]:
        found = shutil.which(tool)
        assert found is not None, f"`{tool}` is not installed here (.ci/run installs it)"
        (path / tool).symlink_to(found)
    return path


@pytest.mark.parametrize("way", ["curl", "wget", "python", "install"])
def test_bootstrap_starts_the_agent(
    way: str, rendered_script: str, agent_server: str, tmp_path: Path
) -> None:
    python = os.path.realpath(sys.executable)
    tools = {"curl": ["curl"], "wget": ["wget"], "python": [], "install": []}[way]
    bin_dir = _tool_dir(tmp_path / "bin", tools)
    if way == "install":
        # An apt-get that "installs" python3 by linking it into PATH.
        fake = bin_dir / "apt-get"
        fake.write_text(
            f'#!/bin/sh\necho "$*" >> {tmp_path}/apt.log\n'
            f'if [ "$1" = install ]; then {shutil.which("ln")} -s {python} {bin_dir}/python3; fi\n',
            encoding="utf-8",
        )
        fake.chmod(0o755)
    else:
        (bin_dir / "python3").symlink_to(python)
    script = tmp_path / "user-data.sh"
    script.write_text(rendered_script.replace("PORT", agent_server), encoding="utf-8")
    boot = tmp_path / "boot"
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "SLIPSTREAM_BOOT_DIR": str(boot),
        "SLIPSTREAM_BOOT_LOG": str(tmp_path / "agent.log"),
    }
    done = subprocess.run(
        ["/bin/sh", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    ran = boot / "ran.json"
    deadline = time.monotonic() + 20
    while not ran.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ran.exists(), (done.stderr, (tmp_path / "agent.log").read_text())
    record = json.loads(ran.read_text())
    assert record["argv"] == ["run", "--env-file", f"{boot}/agent.env"]
    assert record["cwd"] == str(boot)
    assert record["mode"] == 0o600
    assert record["env"] == (
        f"SLIPSTREAM_SERVER=http://127.0.0.1:{agent_server}/base/\n"
        "SLIPSTREAM_RUN_ID=run-7\n"
        "SLIPSTREAM_INSTANCE=web.1\n"
        f"SLIPSTREAM_TOKEN={SERVER_TOKEN}\n"
        f"SLIPSTREAM_SERVER_FINGERPRINT={PIN}\n"
        "SLIPSTREAM_BIND_HOST=0.0.0.0\n"
    )
    assert (boot / "agent.py").stat().st_mode & 0o777 == 0o600
    assert boot.stat().st_mode & 0o777 == 0o700
    if way == "install":
        assert (tmp_path / "apt.log").read_text().splitlines() == [
            "update -q",
            "install -y -q python3",
        ]


def test_bootstrap_refuses_an_agent_that_is_not_the_one_sent(
    rendered_script: str, agent_server: str, tmp_path: Path
) -> None:
    """The agent file is fetched without trusting the network: only its SHA-256 counts."""
    served = tmp_path / "www" / "base" / "agent" / "v1" / "agent.py"
    served.write_text(FAKE_AGENT + "# tampered on the way\n", encoding="utf-8")
    bin_dir = _tool_dir(tmp_path / "bin", ["curl"])
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    script = tmp_path / "user-data.sh"
    script.write_text(rendered_script.replace("PORT", agent_server), encoding="utf-8")
    boot = tmp_path / "boot"
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "SLIPSTREAM_BOOT_DIR": str(boot),
        "SLIPSTREAM_BOOT_LOG": str(tmp_path / "agent.log"),
    }
    done = subprocess.run(
        ["/bin/sh", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "is not the one the service sent (SHA-256 differs)" in done.stderr
    assert not (boot / "agent.py").exists() and not (boot / "agent.py.part").exists()
    assert not (boot / "agent.env").exists()
