"""The roots of the clouds whose providers have a cdktf package (aws, azure, google,
openstack) use only resource types, arguments and blocks their provider's schema has, with
every required one present, and pin a version range that holds the snapshot's version.
Mutated goldens prove the checker catches a misspelled argument and a missing required one.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from providers_map import mapping_for
from tests.compile.test_golden import CLOUDS, DEPLOYMENTS, GOLDEN
from tests.providers_map.schema_check import problems, snapshot
from tests.providers_map.schema_snapshot import PACKAGES, extract
from tests.providers_map.test_clouds import on, with_settings

# cloud type → snapshot name (the provider's local name in roots)
CHECKED = {"aws": "aws", "azure": "azurerm", "google": "google", "openstack": "openstack"}
SCHEMAS = {name: snapshot(name) for name in CHECKED.values()}
CHECKED_CLOUDS = [n for n in CLOUDS.names() if CLOUDS.get(n).type in CHECKED]


def golden(deployment: str, cloud: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GOLDEN / deployment / f"{cloud}.tf.json").read_text())
    return loaded


@pytest.mark.parametrize("cloud", CHECKED_CLOUDS)
@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_golden_roots_match_the_provider_schema(deployment: str, cloud: str) -> None:
    assert problems(golden(deployment, cloud), SCHEMAS) == []


@pytest.mark.parametrize(
    ("cloud", "settings"),
    [
        ("aws-eu", {"subnet_id": "subnet-1", "key_name": "ops", "associate_public_ip": False}),
        ("aws-eu", {"subnet_id": "subnet-1", "vpc_id": "vpc-1"}),
        ("os-lab", {"floating_ip_pool": "public", "key_pair": "ops"}),
        ("az-we", {"resource_group": "ops", "subnet_id": "/s/x", "subscription_id": "0-1"}),
        ("az-we", {"public_ip": False}),
        ("gcp-eu", {"subnetwork": "lab", "public_ip": False}),
    ],
)
def test_roots_with_other_settings_match_the_schema(cloud: str, settings: dict[str, Any]) -> None:
    doc = on(cloud, "webapp", with_settings(cloud, **settings))
    assert problems(doc, SCHEMAS) == []


@pytest.mark.parametrize("cloud_type", [t for t in CHECKED if mapping_for(t).can_snapshot])
def test_snapshot_blocks_match_the_schema(cloud_type: str) -> None:
    mapping = mapping_for(cloud_type)
    block = mapping.snapshot(f'{mapping.instance_resource}.web["1"]', "webapp-web-0a1b")
    assert problems({"resource": block}, SCHEMAS) == []


MUTATIONS = {
    "misspelled argument": (
        "aws-eu",
        lambda d: d["resource"]["aws_instance"]["web"].update(
            instance_typo=d["resource"]["aws_instance"]["web"].pop("instance_type")
        ),
        "resource.aws_instance.web: unknown argument or block `instance_typo` "
        "(did you mean `instance_type`?)",
    ),
    "missing required argument": (
        "az-we",
        lambda d: d["resource"]["azurerm_linux_virtual_machine"]["db"].pop("size"),
        "resource.azurerm_linux_virtual_machine.db: missing required argument `size`",
    ),
    "misspelled argument in a nested block": (
        "gcp-eu",
        lambda d: d["resource"]["google_compute_instance"]["lb"]["boot_disk"][
            "initialize_params"
        ].update(imgae="x"),
        "resource.google_compute_instance.lb.boot_disk.initialize_params: unknown argument "
        "or block `imgae` (did you mean `image`?)",
    ),
    "missing required argument in a nested block": (
        "az-we",
        lambda d: d["resource"]["azurerm_network_interface"]["web"]["ip_configuration"][0].pop(
            "private_ip_address_allocation"
        ),
        "resource.azurerm_network_interface.web.ip_configuration[0]: missing required "
        "argument `private_ip_address_allocation`",
    ),
    "missing required block": (
        "gcp-eu",
        lambda d: d["resource"]["google_compute_instance"]["db"].pop("network_interface"),
        "resource.google_compute_instance.db: missing required block `network_interface`",
    ),
    "unknown resource type": (
        "os-lab",
        lambda d: d["resource"].update(
            openstack_compute_instance_v3=d["resource"].pop("openstack_compute_instance_v2")
        ),
        "resource.openstack_compute_instance_v3: unknown resource type "
        "(did you mean `openstack_compute_instance_v2`?)",
    ),
    "unknown data source type": (
        "aws-eu",
        lambda d: d["data"].update(aws_amis=d["data"].pop("aws_ami")),
        "data.aws_amis: unknown data source type (did you mean `aws_ami`?)",
    ),
    "ignore_changes of an unknown argument": (
        "aws-eu",
        lambda d: d["resource"]["aws_instance"]["db"]["lifecycle"]["ignore_changes"].append(
            "userdata"
        ),
        "resource.aws_instance.db: lifecycle.ignore_changes names unknown `userdata`",
    ),
    "unknown provider argument": (
        "os-lab",
        lambda d: d["provider"]["openstack"].update(clouds="lab"),
        "provider.openstack: unknown argument or block `clouds` (did you mean `cloud`?)",
    ),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_a_broken_golden_fails_the_check(case: str) -> None:
    cloud, mutate, expected = MUTATIONS[case]
    doc = copy.deepcopy(golden("webapp", cloud))
    assert problems(doc, SCHEMAS) == []
    mutate(doc)
    assert expected in problems(doc, SCHEMAS)


def _allows(constraint: str, version: str) -> bool:
    """Whether a Terraform version constraint (``~> x.y``, ``>= a, < b``) admits ``version``."""

    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split("."))

    have = parts(version)
    for clause in constraint.split(","):
        op, _, wanted = clause.strip().partition(" ")
        want = parts(wanted)
        if op == "~>":
            upper = (*want[:-2], want[-2] + 1) if len(want) > 1 else (want[0] + 1,)
            if not want <= have < upper:
                return False
        elif (op == ">=" and have < want) or (op == "<" and have >= want):
            return False
    return True


@pytest.mark.parametrize("cloud_type", sorted(CHECKED))
def test_pins_admit_the_checked_version(cloud_type: str) -> None:
    name = CHECKED[cloud_type]
    cloud = next(n for n in CHECKED_CLOUDS if CLOUDS.get(n).type == cloud_type)
    pin = golden("cluster", cloud)["terraform"]["required_providers"][name]
    assert pin["source"] == SCHEMAS[name]["provider"] == PACKAGES[name][2]
    assert _allows(pin["version"], SCHEMAS[name]["version"]), (pin, SCHEMAS[name]["version"])
    major = int(SCHEMAS[name]["version"].split(".")[0])
    assert not _allows(pin["version"], f"{major + 1}.0.0"), "a new major version is unchecked"


def test_version_constraint_reader() -> None:
    assert _allows("~> 6.25", "6.25.0") and _allows("~> 6.25", "6.99.1")
    assert not _allows("~> 6.25", "6.24.9") and not _allows("~> 6.25", "7.0.0")
    assert _allows(">= 1.10, < 3.0", "2.4.0") and not _allows(">= 1.10, < 3.0", "1.9.0")


def test_snapshots_say_where_they_come_from_and_how_to_refresh() -> None:
    for name, (package, version, source) in PACKAGES.items():
        head = SCHEMAS[name]
        assert head["provider"] == source
        assert head["from"] == f"{package} {version} (PyPI)"
        assert head["refresh"] == "python -m tests.providers_map.schema_snapshot --refresh"
        assert re.fullmatch(r"\d+\.\d+\.\d+", head["version"])
        assert len(head["resources"]) > 50 and len(head["data_sources"]) > 20


def test_extract_reads_a_jsii_assembly() -> None:
    """The extraction on a small hand-made assembly of the shape cdktf generates."""
    link = "{@link https://registry.terraform.io/providers/acme/box/2.1.0/docs"

    def prop(name: str, tf: str, optional: bool, fqn: str | None = None) -> dict[str, Any]:
        kind: dict[str, Any] = {"primitive": "string"}
        if fqn:
            kind = {
                "union": {
                    "types": [
                        {"fqn": "cdktf.IResolvable"},
                        {"collection": {"kind": "array", "elementtype": {"fqn": fqn}}},
                    ]
                }
            }
        return {
            "name": name,
            "optional": optional,
            "type": kind,
            "docs": {"summary": f"Docs at Terraform Registry: {link}/resources/box#{tf} B#{tf}}}."},
        }

    types = {
        "acme.Provider": {
            "kind": "class",
            "base": "cdktf.TerraformProvider",
            "fqn": "acme.Provider",
            "docs": {"summary": f"Represents a {link} box}}."},
            "initializer": {"parameters": [{"name": "config", "type": {"fqn": "acme.PC"}}]},
        },
        "acme.PC": {
            "kind": "interface",
            "datatype": True,
            "properties": [prop("apiUrl", "api_url", True)],
        },
        "acme.Box": {
            "kind": "class",
            "base": "cdktf.TerraformResource",
            "fqn": "acme.Box",
            "docs": {"summary": f"Represents a {link}/resources/box box_machine}}."},
            "initializer": {"parameters": [{"name": "config", "type": {"fqn": "acme.BC"}}]},
        },
        "acme.BC": {
            "kind": "interface",
            "datatype": True,
            "properties": [prop("sizeGb", "size_gb", False), prop("disk", "disk", False, "acme.D")],
        },
        "acme.D": {
            "kind": "interface",
            "datatype": True,
            "properties": [prop("ioV2", "io_v2", True)],
        },
    }
    assert extract({"types": types}) == {
        "version": "2.1.0",
        "provider_config": {"optional": ["api_url"]},
        "resources": {
            "box_machine": {
                "required": ["size_gb"],
                "blocks": {"disk": {"min": 1, "optional": ["io_v2"]}},
            }
        },
        "data_sources": {},
    }
