"""The `openstack` mapping renders shipped and custom deployments into
`terraform-provider-openstack/openstack` roots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.canonical import dumps
from engine.compile.compiler import compile_deployment
from engine.errors import CloudError, RecipeInvalid
from engine.recipes.clouds import parse_clouds_text
from engine.recipes.loader import RecipeLoader
from engine.recipes.overrides import Overrides
from providers_map import mapping_for
from providers_map.base import COMMON_VARIABLES, SnapshotUnsupported, escape
from providers_map.bootstrap import AGENT_VARIABLES, shell_quoted, user_data
from providers_map.catalog import native_images
from providers_map.openstack import MAPPING
from tests.providers_map.test_aws import EVIL, OURS, compile_on, live_templates, write_recipes

CLOUDS = "clouds:\n  os-lab: {type: openstack, cloud: lab}\n"
SECGROUP = "openstack_networking_secgroup_v2"
RULES = "openstack_networking_secgroup_rule_v2"
SERVER = "openstack_compute_instance_v2"


def on_lab(deployment: str, clouds: str = CLOUDS, root: Path | None = None) -> dict:  # type: ignore[type-arg]
    return compile_on("os-lab", deployment, clouds, root)


def test_webapp_structure() -> None:
    doc = on_lab("webapp")
    assert doc["terraform"]["required_providers"] == {
        "openstack": {"source": "terraform-provider-openstack/openstack", "version": "~> 3.0"}
    }
    assert doc["provider"] == {"openstack": {"cloud": "lab"}}
    assert doc["variable"] == {**COMMON_VARIABLES, **AGENT_VARIABLES}
    servers = doc["resource"][SERVER]
    assert list(servers) == ["db", "web", "lb"]
    assert sorted(servers["web"]["for_each"]) == ["1", "2"]
    assert "count" not in dumps(doc)
    assert {n: s["flavor_name"] for n, s in servers.items()} == {
        "db": "m1.small",
        "web": "m1.small",
        "lb": "m1.small",
    }
    web = servers["web"]
    assert web["image_id"] == "${data.openstack_images_image_v2.ubuntu-22-04.id}"
    assert web["security_groups"] == ["${openstack_networking_secgroup_v2.web.name}"]
    assert web["name"] == "webapp-web-${each.key}"
    assert web["user_data"] == user_data()
    assert web["metadata"]["slipstream-run"] == "${var.run_id}"
    assert web["metadata"]["slipstream-component"] == "webapp-web"
    assert "network" not in web and "key_pair" not in web
    assert "floatingip" not in dumps(doc)


def test_images_by_name_from_the_catalog() -> None:
    images = on_lab("webapp")["data"]["openstack_images_image_v2"]
    assert images == {
        "debian-12": {
            "name": native_images()["debian-12"]["openstack"]["name"],
            "most_recent": True,
        },
        "ubuntu-22-04": {
            "name": native_images()["ubuntu-22.04"]["openstack"]["name"],
            "most_recent": True,
        },
    }
    clouds = CLOUDS.replace("}", ", images: {debian-12: {name: Debian Bookworm (ours)}}}")
    assert on_lab("webapp", clouds)["data"]["openstack_images_image_v2"]["debian-12"] == {
        "name": "Debian Bookworm (ours)",
        "most_recent": True,
    }


def test_security_group_rule_per_port() -> None:
    resources = on_lab("webapp")["resource"]
    assert resources[SECGROUP]["web"]["name"] == "webapp-web-${var.run_id}"
    rules = resources[RULES]
    assert {n: r["for_each"] for n, r in rules.items()} == {
        "db": {"22": 22, "5480": 5480},
        "web": {"22": 22, "8080": 8080},
        "lb": {"22": 22, "80": 80},
    }
    web = rules["web"]
    assert (web["direction"], web["protocol"], web["remote_ip_prefix"]) == (
        "ingress",
        "tcp",
        "0.0.0.0/0",
    )
    assert web["port_range_min"] == web["port_range_max"] == "${each.value}"
    assert web["security_group_id"] == "${openstack_networking_secgroup_v2.web.id}"


def test_cluster_structure() -> None:
    servers = on_lab("cluster")["resource"][SERVER]
    assert sorted(servers["worker"]["for_each"]) == ["1", "2", "3"]
    assert servers["head"]["flavor_name"] == servers["worker"]["flavor_name"] == "m1.medium"


def test_outputs_use_access_ip() -> None:
    value = on_lab("webapp")["output"]["instances"]["value"]
    assert (
        f'{{for k, r in {SERVER}.lb : "lb.${{k}}" => {{address = r.access_ip_v4, id = r.id}}}}'
    ) in value


def test_settings_network_and_key_pair() -> None:
    web = on_lab("webapp", CLOUDS.replace("}", ", network: private, key_pair: ops}"))["resource"][
        SERVER
    ]["web"]
    assert web["network"] == [{"name": "private"}]
    assert web["key_pair"] == "ops"


def test_floating_ips_become_the_addresses() -> None:
    doc = on_lab("webapp", CLOUDS.replace("}", ", floating_ip_pool: public}"))
    resources = doc["resource"]
    assert resources["openstack_networking_floatingip_v2"]["web"]["pool"] == "public"
    assert sorted(resources["openstack_networking_floatingip_v2"]["web"]["for_each"]) == ["1", "2"]
    bind = resources["openstack_networking_floatingip_associate_v2"]["web"]
    assert bind["floating_ip"] == "${openstack_networking_floatingip_v2.web[each.key].address}"
    assert bind["port_id"] == "${data.openstack_networking_port_v2.web[each.key].id}"
    assert doc["data"]["openstack_networking_port_v2"]["web"]["for_each"] == f"${{{SERVER}.web}}"
    assert (
        f"{{for k, r in {SERVER}.db : r.id => openstack_networking_floatingip_v2.db[k].address}}"
    ) in doc["locals"]["floating_ips"]
    assert "address = local.floating_ips[r.id]" in doc["output"]["instances"]["value"]
    assert "access_ip_v4" not in doc["output"]["instances"]["value"]


@pytest.mark.parametrize(
    "entry",
    [
        "{type: openstack}",
        "{type: openstack, cloud: lab, flavors: {huge: x}}",
        "{type: openstack, cloud: lab, images: {debian-12: {id: x}}}",
    ],
)
def test_bad_settings_are_refused(entry: str) -> None:
    with pytest.raises(RecipeInvalid):
        parse_clouds_text(f"clouds:\n  os-lab: {entry}\n")


def test_flavor_precedence(tmp_path: Path) -> None:
    flavors = CLOUDS.replace("}", ", flavors: {small: c1.r2, medium: c2.r4}}")
    servers = on_lab("webapp", flavors)["resource"][SERVER]
    assert servers["web"]["flavor_name"] == "c1.r2"
    root = write_recipes(
        tmp_path, "image: debian-12\nsize: medium\nclouds:\n  openstack: {flavor: gpu.large}\n"
    )
    assert on_lab("custom", flavors, root)["resource"][SERVER]["box"]["flavor_name"] == "gpu.large"


def test_custom_size_takes_a_bigger_flavor(tmp_path: Path) -> None:
    root = write_recipes(tmp_path, "image: debian-12\nsize: {cpu: 3, ram_gb: 6}\n")
    assert on_lab("custom", root=root)["resource"][SERVER]["box"]["flavor_name"] == "m1.large"


def test_override_metadata_is_escaped(tmp_path: Path) -> None:
    root = write_recipes(
        tmp_path,
        (
            f"description: {json.dumps(EVIL)}\nimage: rocky-9\nclouds:\n  os-lab:\n"
            f"    flavor: {json.dumps('x${y}')}\n"
            f"    metadata: {{owner: {json.dumps(EVIL)}, {json.dumps(EVIL)}: k}}\n"
        ),
        description=EVIL,
    )
    doc = on_lab("custom", root=root)
    box = doc["resource"][SERVER]["box"]
    assert box["metadata"]["owner"] == escape(EVIL)
    assert box["metadata"][escape(EVIL)] == "k"
    assert box["metadata"]["slipstream-description"] == escape(EVIL)
    assert box["flavor_name"] == "x$${y}"
    live = live_templates(doc)
    assert [t for t in live if not t.startswith(OURS)] == []
    assert [t for t in live if "passwd" in t or "already" in t] == []


def test_override_metadata_cannot_take_reserved_names(tmp_path: Path) -> None:
    root = write_recipes(
        tmp_path,
        "image: debian-12\nclouds:\n  openstack:\n    metadata: {slipstream-node: other}\n",
    )
    with pytest.raises(CloudError, match="metadata `slipstream-node` is reserved"):
        on_lab("custom", root=root)


def test_impossible_size_is_refused(tmp_path: Path) -> None:
    root = write_recipes(tmp_path, "image: debian-12\nsize: {cpu: 64, ram_gb: 8}\n")
    with pytest.raises(CloudError) as err:
        on_lab("custom", root=root)
    assert "cloud `os-lab`: node `box`: no OpenStack flavor has 64 vCPUs and 8 GiB" in str(
        err.value
    )
    fixed = CLOUDS.replace("}", ", flavors: {small: big}}")
    with pytest.raises(CloudError):  # the flavors setting names sizes, not custom ones
        on_lab("custom", fixed, root)


def test_spread_keeps_instance_indices() -> None:
    clouds = CLOUDS + "  aws-eu: {type: aws, region: eu-west-1}\n"
    cfg = parse_clouds_text(clouds)
    overrides = Overrides.parse(
        clouds=["db=os-lab", "lb=os-lab", "web=aws-eu,os-lab"], multiplicity=["web=4"]
    )
    docs = compile_deployment(RecipeLoader(None, cfg).deployment("webapp", overrides), cfg)
    assert sorted(docs["aws-eu"]["resource"]["aws_instance"]["web"]["for_each"]) == ["1", "3"]
    assert sorted(docs["os-lab"]["resource"][SERVER]["web"]["for_each"]) == ["2", "4"]
    assert list(docs["aws-eu"]["resource"]["aws_instance"]) == ["web"]


def test_tokens_are_a_sensitive_variable_never_a_literal() -> None:
    doc = on_lab("webapp")
    assert doc["variable"]["agent_tokens"]["sensitive"] is True
    token = shell_quoted("var.agent_tokens[each.value.instance]")
    for server in doc["resource"][SERVER].values():
        assert f"\nTOKEN={token}\n" in server["user_data"]


def test_rendering_is_deterministic() -> None:
    clouds = CLOUDS.replace("}", ", floating_ip_pool: public, network: n}")
    for name in ("webapp", "cluster"):
        assert dumps(on_lab(name, clouds)) == dumps(on_lab(name, clouds))


def test_registered_without_snapshots() -> None:
    assert mapping_for("openstack") is MAPPING
    assert not MAPPING.can_snapshot
    with pytest.raises(SnapshotUnsupported, match="no resource that makes an image of a server"):
        MAPPING.snapshot(f'{SERVER}.web["1"]', "img")
