"""`slipstream inventory` against moto's EC2 (the design card's choice for AWS APIs).

Moto stands in for EC2 in this process, so the CLI runs in-process too. Terraform's AWS
provider cannot be fetched here, so the run's state is written as its apply would leave
it: the ids of instances made through boto3 with the tags the `aws` mapping gives them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from engine.access import Actor
from engine.cli.app import app
from engine.errors import AccessDenied
from engine.inventory.states import STATE_FILE
from engine.recipes.overrides import Overrides
from engine.service import Service

REGION = "eu-west-1"
CLOUDS = f"""clouds:
  aws-eu: {{type: aws, region: {REGION}}}
  rack: {{type: ssh, hosts: [{{address: 192.0.2.7}}]}}
"""
ORPHAN_RUN = "0ddba11c0ffee000"  # a run this service never had
AMI = "ami-12c6146b"  # one of moto's own images


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "clouds.yaml").write_text(CLOUDS)
    monkeypatch.setenv("SLIPSTREAM_HOME", str(home))
    monkeypatch.setenv("SLIPSTREAM_USER", "tester")
    return home


def launch(ec2: Any, tags: dict[str, str]) -> str:
    made = ec2.run_instances(
        ImageId=AMI,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return str(made["Instances"][0]["InstanceId"])


def ours(run_id: str, instance: str) -> dict[str, str]:
    return {
        "Name": f"cluster-{instance}",
        "slipstream-service": "slipstream",
        "slipstream-run": run_id,
        "slipstream-instance": instance,
    }


def applied_state(home: Path, run_id: str, instances: dict[str, str]) -> None:
    """The state Terraform's apply of the run's aws-eu root leaves: instance → EC2 id."""
    resources: dict[str, list[dict[str, Any]]] = {}
    for name, ident in instances.items():
        node, index = name.split(".")
        tags = ours(run_id, name)
        attributes = {"id": ident, "instance_type": "t3.small", "tags": tags, "tags_all": tags}
        entry = {"index_key": index, "schema_version": 1, "attributes": attributes}
        resources.setdefault(node, []).append(entry)
    provider = 'provider["registry.terraform.io/hashicorp/aws"]'
    doc = {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": 3,
        "lineage": "5f0c1d2e-0000-4000-8000-000000000000",
        "outputs": {},
        "resources": [
            {
                "mode": "managed",
                "type": "aws_instance",
                "name": node,
                "provider": provider,
                "instances": found,
            }
            for node, found in sorted(resources.items())
        ],
        "check_results": None,
    }
    (home / "runs" / run_id / "tf" / "aws-eu" / STATE_FILE).write_text(json.dumps(doc))


def deploy_on_aws(home: Path) -> str:
    """A `cluster` run on aws-eu (head.1, worker.1), stored as a deploy stores it."""
    service = Service(home, None)
    overrides = Overrides.parse([], ["head=aws-eu", "worker=aws-eu"], ["worker=1"])
    run_id = service.deploy(service.local_actor("tester"), "cluster", overrides)
    service.manager().release(run_id)
    service.store.set_state(run_id, "Ready")
    return run_id


def invoke(*args: str, answer: str | None = None) -> Any:
    return CliRunner().invoke(app, ["inventory", *args], input=answer)


def states(ec2: Any) -> dict[str, str]:
    found = ec2.describe_instances()["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in found for i in r["Instances"]}


@pytest.fixture
def found(aws: Any, home: Path) -> dict[str, str]:
    """A run whose worker was terminated behind Terraform's back (a ghost), an instance of
    it that Terraform never recorded (an orphan: a crash between EC2 and the state), an
    orphan of a run this service never had, and an instance that is not ours."""
    run_id = deploy_on_aws(home)
    head, worker = launch(aws, ours(run_id, "head.1")), launch(aws, ours(run_id, "worker.1"))
    applied_state(home, run_id, {"head.1": head, "worker.1": worker})
    aws.terminate_instances(InstanceIds=[worker])
    return {
        "run": run_id,
        "head": head,
        "ghost": worker,
        "orphan": launch(aws, ours(run_id, "worker.2")),
        "stranger": launch(aws, ours(ORPHAN_RUN, "web.1")),
        "untagged": launch(aws, {"Name": "not-ours"}),
    }


def test_an_orphan_and_a_ghost_are_reported(found: dict[str, str]) -> None:
    result = invoke("--cloud", "aws-eu")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    run = found["run"]
    assert lines[0] == (
        "aws-eu (aws): 3 live instance(s) labelled with this service, 2 in runs' states"
    )
    assert sorted(lines[1:-1]) == sorted(
        [
            f"  orphan  aws-eu  {found['orphan']}  run {run} worker.2: in no run's state",
            f"  orphan  aws-eu  {found['stranger']}  run {ORPHAN_RUN} web.1: in no run's state; "
            f"its run `{ORPHAN_RUN}` is not one of this service's (another service sharing the "
            "account?): not deleted",
            f"  ghost   aws-eu  {found['ghost']}  run {run} worker.1: in the run's state, "
            "terminated in the cloud",
        ]
    )
    assert lines[-1] == "2 orphan(s), 1 ghost(s), 0 drift, 0 unchecked"


def test_the_json_document_lists_instances_and_findings(found: dict[str, str]) -> None:
    result = invoke("--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    clouds = {c["cloud"]: c for c in doc["clouds"]}
    assert sorted(clouds) == ["aws-eu", "local", "rack"]
    aws = clouds["aws-eu"]
    assert {i["id"] for i in aws["instances"]} == {
        found[k] for k in ("head", "ghost", "orphan", "stranger")
    }  # the untagged one is not ours
    kinds = {(f["kind"], f["id"], f["known_run"]) for f in aws["findings"]}
    assert kinds == {
        ("orphan", found["orphan"], True),
        ("orphan", found["stranger"], False),
        ("ghost", found["ghost"], True),
    }
    assert clouds["rack"]["listed"] is False
    assert clouds["rack"]["note"] == (
        "listing instances on `ssh` clouds is not supported yet (supported: aws, local)"
    )
    assert doc["deleted"] == []


def test_orphans_are_deleted_only_once_confirmed(
    aws: Any, home: Path, found: dict[str, str]
) -> None:
    before = states(aws)
    refused = invoke("--cloud", "aws-eu", "--delete-orphans", answer="n\n")
    assert refused.exit_code == 0, refused.output
    assert "1 orphan(s) to delete" in refused.stderr and "nothing deleted" in refused.stderr
    assert f"not deleting {found['stranger']}" in refused.stderr
    unanswered = invoke("--cloud", "aws-eu", "--delete-orphans")  # no terminal, no --yes
    assert unanswered.exit_code == 1
    assert states(aws) == before

    confirmed = invoke("--cloud", "aws-eu", "--delete-orphans", "--yes")
    assert confirmed.exit_code == 0, confirmed.output
    assert f"deleted aws-eu {found['orphan']}" in confirmed.stderr
    after = states(aws)
    assert after[found["orphan"]] in ("shutting-down", "terminated")
    assert {k: v for k, v in after.items() if k != found["orphan"]} == {
        k: v for k, v in before.items() if k != found["orphan"]
    }  # the head, the stranger's, the one not ours: untouched
    again = invoke("--cloud", "aws-eu")
    assert again.stdout.splitlines()[-1] == "1 orphan(s), 1 ghost(s), 0 drift, 0 unchecked"
    logged = Service(home, None).store.events(found["run"])
    assert [e.message for e in logged if e.kind == "inventory"] == [
        f"aws-eu: orphan worker.2 ({found['orphan']}) deleted by tester"
    ]


def test_a_cloud_that_cannot_be_asked_fails_the_command_naming_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = invoke()
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "aws-eu (aws): cloud `aws-eu` (aws, eu-west-1): cannot list its instances: "
        "EndpointConnectionError"
    )
    assert "rack (ssh): listing instances on `ssh` clouds is not supported yet" in lines[-2]


def test_only_administrators_take_the_inventory(home: Path) -> None:
    with pytest.raises(AccessDenied, match="bob is not an administrator"):
        Service(home, None).inventory(Actor("bob"))


# A stand-in for Terraform speaking its machine-readable UI: `plan` reports the worker's
# instance as deleted outside Terraform, as Terraform 1.11 does once its refresh finds it
# terminated. It notes where it ran and what it was given.
FAKE_TERRAFORM = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
if args[:1] == ["version"]:
    print(json.dumps({{"terraform_version": "1.11.4", "platform": "linux_amd64"}}))
    sys.exit(0)
Path({log!r}).open("a").write(json.dumps({{"cwd": os.getcwd(), "args": args}}) + "\\n")
addr = 'aws_instance.worker["1"]'
drift = {{"resource": {{"addr": addr, "resource_type": "aws_instance"}}, "action": "delete"}}
summary = {{"add": 1, "change": 0, "remove": 0, "operation": "plan"}}
lines = [
    {{"@level": "info", "@message": "Terraform 1.11.4", "type": "version"}},
    {{"@level": "info", "@message": addr + ": Drift detected (delete)", "type": "resource_drift",
     "change": drift}},
    {{"@level": "info", "@message": "Plan: 1 to add, 0 to change, 0 to destroy.",
     "type": "change_summary", "changes": summary}},
]
for line in lines:
    print(json.dumps(line))
Path("plan.bin").write_bytes(b"plan")
"""


def test_terraform_drift_of_a_run_is_found_on_a_copy_and_recorded_as_events(
    found: dict[str, str], home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    fake, log = tmp_path / "terraform", tmp_path / "terraform.log"
    fake.write_text(FAKE_TERRAFORM.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    monkeypatch.setenv("SLIPSTREAM_TERRAFORM", str(fake))
    root = home / "runs" / found["run"] / "tf" / "aws-eu"
    root_before = sorted(p.name for p in root.iterdir())
    service = Service(home, None)

    findings = service.drift(service.local_actor("tester"), found["run"])

    assert [(f.kind, f.cloud, f.id, f.instance, f.message) for f in findings] == [
        ("drift", "aws-eu", found["ghost"], "worker.1",
         'aws_instance.worker["1"]: Drift detected (delete)'),
    ]  # fmt: skip
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["args"][0] for c in calls] == ["plan"]
    assert Path(calls[0]["cwd"]).parent == root.parent.parent  # a copy beside tf/, gone now
    assert not Path(calls[0]["cwd"]).exists()
    assert sorted(p.name for p in root.iterdir()) == root_before  # the run's root untouched
    drift_events = [e for e in service.store.events(found["run"]) if e.kind == "drift"]
    assert [e.message for e in drift_events] == [
        f'aws-eu: worker.1 ({found["ghost"]}): aws_instance.worker["1"]: Drift detected (delete)'
    ]

    result = invoke("--cloud", "aws-eu", "--drift")
    assert f"  drift   aws-eu  {found['ghost']}  run {found['run']} worker.1: " in result.stdout
