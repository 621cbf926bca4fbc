"""What every virtual-machine cloud mapping must do, checked on each of the seed clouds
(azure, google, opennebula, cloudsigma, vcd, cloudstack, ibm, exoscale): instances keyed by
index, an ``instances`` output, labels naming service, run and instance, firewall rules
from ``ports``, the agent bootstrap, escaped user text, settings checked, and an image
snapshot or a clear refusal. Cloud-specific choices follow at the end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.canonical import dumps
from engine.errors import CloudError, RecipeInvalid
from engine.recipes.clouds import parse_clouds_text
from providers_map import NO_PROVIDER, cloud_types, cloudsigma, mapping_for
from providers_map.base import SnapshotUnsupported, escape
from providers_map.bootstrap import user_data, user_data_base64
from providers_map.machines import image_data_name
from tests.compile.test_golden import GOLDEN
from tests.compile.tfstructure import interpolations, strings
from tests.providers_map.test_aws import EVIL, OURS, compile_on, live_templates, write_recipes

CLOUDS_YAML = (GOLDEN / "clouds.yaml").read_text(encoding="utf-8")
Doc = dict[str, Any]


def _tags(body: Doc) -> dict[str, str]:
    return dict(str(t).split(":", 1) for t in body["tags"])


def _for_each_ports(resource: str) -> Callable[[Doc, str], set[int]]:
    return lambda doc, node: {int(k) for k in doc["resource"][resource][node]["for_each"]}


# cloud name → (type, instance resource, labels of an instance body, open ports of a node)
SEEDS: dict[str, tuple[str, str, Callable[[Doc], dict[str, str]], Any]] = {
    "az-we": (
        "azure",
        "azurerm_linux_virtual_machine",
        lambda b: b["tags"],
        _for_each_ports("azurerm_network_security_rule"),
    ),
    "gcp-eu": (
        "google",
        "google_compute_instance",
        lambda b: b["metadata"],
        lambda d, n: {
            int(p) for p in d["resource"]["google_compute_firewall"][n]["allow"][0]["ports"]
        },
    ),
    "one-lab": (
        "opennebula",
        "opennebula_virtual_machine",
        lambda b: b["tags"],
        lambda d, n: {
            int(r["range"])
            for r in d["resource"]["opennebula_security_group"][n]["rule"]
            if r["rule_type"] == "INBOUND"
        },
    ),
    "sigma-zrh": ("cloudsigma", "cloudsigma_server", lambda b: b["meta"], None),
    "vcd-org": (
        "vcd",
        "vcd_vm",
        lambda b: b["metadata"],
        lambda d, n: {
            int(p) for p in d["resource"]["vcd_nsxt_app_port_profile"][n]["app_port"][0]["port"]
        },
    ),
    "cs-zone": (
        "cloudstack",
        "cloudstack_instance",
        lambda b: b["tags"],
        lambda d, n: {
            int(p) for p in d["resource"]["cloudstack_security_group_rule"][n]["rule"][0]["ports"]
        },
    ),
    "ibm-eu": ("ibm", "ibm_is_instance", _tags, _for_each_ports("ibm_is_security_group_rule")),
    "exo-gva": (
        "exoscale",
        "exoscale_compute_instance",
        lambda b: b["labels"],
        _for_each_ports("exoscale_security_group_rule"),
    ),
}
NAMES = sorted(SEEDS)
# Where a component's own labels go, per cloud type (free text allowed there).
LABEL_OVERRIDE = {
    "azure": "tags",
    "opennebula": "tags",
    "cloudsigma": "meta",
    "vcd": "metadata",
    "cloudstack": "tags",
    "exoscale": "labels",
}
SIZE_OVERRIDE = {
    "azure": ("vm_size", "Standard_HB120rs_v3"),
    "google": ("machine_type", "m3-megamem-128"),
    "cloudstack": ("service_offering", "huge"),
    "ibm": ("profile", "mx2-128x1024"),
    "exoscale": ("type", "memory.titan"),
}
OURS_TOO = (
    *OURS,
    "${azurerm_",
    "${google_",
    "${opennebula_",
    "${cloudsigma_",
    "${vcd_",
    "${cloudstack_",
    "${ibm_",
    "${exoscale_",
    "${base64encode(",
    "${lower(",
    "${substr(",
)


def on(
    cloud: str, deployment: str = "webapp", clouds: str = CLOUDS_YAML, root: Path | None = None
) -> Doc:
    return compile_on(cloud, deployment, clouds, root)


def with_settings(cloud: str, **changes: Any) -> str:
    """The golden clouds file with ``changes`` made to ``cloud``'s entry (None removes)."""
    import yaml

    doc = yaml.safe_load(CLOUDS_YAML)
    entry = doc["clouds"][cloud]
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return yaml.safe_dump(doc)


def test_every_seed_cloud_of_slipstream_is_mapped_or_answered() -> None:
    seeds = {
        "opennebula",
        "openstack",
        "cloudsigma",
        "aws",
        "vcd",
        "cloudstack",
        "ibm",
        "azure",
        "google",
        "exoscale",
        "ssh",
        "local",
    }
    assert seeds <= set(cloud_types())
    assert {t for t, *_ in SEEDS.values()} == set(cloud_types()) - {
        "aws",
        "openstack",
        "ssh",
        "local",
    }
    assert not set(NO_PROVIDER) & set(cloud_types())


@pytest.mark.parametrize("cloud", NAMES)
def test_instances_are_keyed_by_index(cloud: str) -> None:
    _, resource, *_ = SEEDS[cloud]
    instances = on(cloud, "cluster")["resource"][resource]
    assert list(instances) == ["head", "worker"]
    assert instances["worker"]["for_each"] == {
        str(i): {"instance": f"worker.{i}", "index": i} for i in (1, 2, 3)
    }
    assert not any("count" in body for body in instances.values())


@pytest.mark.parametrize("cloud", NAMES)
def test_instances_output_gives_address_and_id(cloud: str) -> None:
    _, resource, *_ = SEEDS[cloud]
    value = on(cloud, "cluster")["output"]["instances"]["value"]
    assert f'{{for k, r in {resource}.worker : "worker.${{k}}" => {{address = ' in value
    assert value.count("id = r.id}") == 2


@pytest.mark.parametrize("cloud", NAMES)
def test_machines_are_labelled_with_service_run_and_instance(cloud: str) -> None:
    _, resource, labels_of, _ = SEEDS[cloud]
    labels = labels_of(on(cloud)["resource"][resource]["web"])
    assert labels["slipstream-service"] == "${var.service}"
    assert labels["slipstream-run"] == "${var.run_id}"
    assert labels["slipstream-instance"] == "${each.value.instance}"
    assert (labels["slipstream-deployment"], labels["slipstream-node"]) == ("webapp", "web")


@pytest.mark.parametrize("cloud", [c for c in NAMES if SEEDS[c][3]])
def test_firewall_opens_the_component_ports_and_ssh(cloud: str) -> None:
    ports_of = SEEDS[cloud][3]
    doc = on(cloud)
    assert {n: ports_of(doc, n) for n in ("db", "web", "lb")} == {
        "db": {22, 5480},
        "web": {22, 8080},
        "lb": {22, 80},
    }


def test_cloudsigma_has_no_firewall_to_open() -> None:
    """The provider cannot attach a policy to a NIC (see the module); nothing pretends to."""
    assert "firewall" not in dumps(on("sigma-zrh")["resource"])
    assert "accepts all inbound traffic" in str(cloudsigma.__doc__)


@pytest.mark.parametrize("cloud", NAMES)
def test_machines_start_the_agent(cloud: str) -> None:
    _, resource, *_ = SEEDS[cloud]
    body = dumps(on(cloud)["resource"][resource]["db"])
    assert json.dumps(user_data()) in body or json.dumps(user_data_base64()) in body


@pytest.mark.parametrize("cloud", NAMES)
def test_user_text_is_never_evaluated(cloud: str, tmp_path: Path) -> None:
    kind = SEEDS[cloud][0]
    extra = (
        f"clouds:\n  {kind}:\n    {LABEL_OVERRIDE[kind]}: {{note: {json.dumps(EVIL)}}}\n"
        if kind in LABEL_OVERRIDE
        else ""
    )
    root = write_recipes(
        tmp_path, f"description: {json.dumps(EVIL)}\nimage: debian-12\n{extra}", description=EVIL
    )
    doc = on(cloud, "custom", root=root)
    live = live_templates(doc)
    assert [t for t in live if not t.startswith(OURS_TOO)] == []
    # Expressions with their string literals blanked: user text there would be live code.
    code = [c for _, text in strings(doc, "") for c in interpolations(text)]
    assert code and [c for c in code if "passwd" in c or "already" in c] == []
    if kind in LABEL_OVERRIDE:
        assert json.dumps(escape(EVIL)) in dumps(doc)


@pytest.mark.parametrize("cloud", NAMES)
def test_snapshot_or_a_clear_no(cloud: str) -> None:
    kind, resource, *_ = SEEDS[cloud]
    mapping = mapping_for(kind)
    address = f'{resource}.web["2"]'
    if mapping.engine_snapshots:  # `local`: the engine archives the sandbox, no resource
        assert not mapping.snapshot_resource and not mapping.cannot_snapshot
        return
    if not mapping.can_snapshot:
        with pytest.raises(SnapshotUnsupported, match=f"cloud type `{kind}` cannot make images: "):
            mapping.snapshot(address, "img")
        assert mapping.cannot_snapshot
        return
    block = mapping.snapshot(address, "webapp-web-0a1b")
    assert list(block) == [mapping.snapshot_resource]
    assert list(block[mapping.snapshot_resource]) == [image_data_name("webapp-web-0a1b")]
    assert '.web["2"]' in str(block)
    for bad in ("web", f'{resource}.web["1"].id}}${{file("x")', 'terraform_data.web["1"]'):
        with pytest.raises(ValueError):
            mapping.snapshot(bad, "img")


def test_every_mapping_snapshots_or_says_why_not() -> None:
    for kind in cloud_types():
        mapping = mapping_for(kind)
        makes = bool(mapping.snapshot_resource) or mapping.engine_snapshots
        assert makes != bool(mapping.cannot_snapshot), kind


@pytest.mark.parametrize("cloud", NAMES)
def test_missing_required_settings_are_refused(cloud: str) -> None:
    kind = SEEDS[cloud][0]
    for key in mapping_for(kind).settings_schema.get("required", []):
        with pytest.raises(RecipeInvalid, match=f"missing required key `{key}`"):
            parse_clouds_text(with_settings(cloud, **{key: None}))
    with pytest.raises(RecipeInvalid, match="unknown key `colour`"):
        parse_clouds_text(with_settings(cloud, colour="blue"))


@pytest.mark.parametrize("cloud", NAMES)
def test_images_setting_replaces_the_catalog_row(cloud: str) -> None:
    kind = SEEDS[cloud][0]
    keys = mapping_for(kind).settings_schema["properties"]["images"]["additionalProperties"]
    ours = {key: f"site-{key}" for key in keys["required"]}
    doc = on(cloud, "cluster", with_settings(cloud, images={"debian-12": ours}))
    text = dumps(doc)
    assert all(f'"site-{key}"' in text for key in keys["required"])


@pytest.mark.parametrize("cloud", NAMES)
def test_an_image_the_cloud_lacks_is_refused(cloud: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("providers_map.machines.image_lookup", lambda *args: None)
    with pytest.raises(CloudError, match=f"cloud `{cloud}`: node `db`: image `debian-12` has no "):
        on(cloud)


def test_rocky_has_no_azure_image(tmp_path: Path) -> None:
    root = write_recipes(tmp_path, "image: rocky-9\n")
    with pytest.raises(CloudError, match="image `rocky-9` has no Azure image"):
        on("az-we", "custom", root=root)


@pytest.mark.parametrize("cloud", [c for c in NAMES if SEEDS[c][0] in SIZE_OVERRIDE])
def test_impossible_size_is_refused_unless_the_component_names_a_type(
    cloud: str, tmp_path: Path
) -> None:
    kind, resource, *_ = SEEDS[cloud]
    root = write_recipes(tmp_path, "image: debian-12\nsize: {cpu: 512, ram_gb: 4096}\n")
    with pytest.raises(CloudError, match="512 vCPUs and 4096 GiB"):
        on(cloud, "custom", root=root)
    key, value = SIZE_OVERRIDE[kind]
    write_recipes(
        tmp_path,
        "image: debian-12\nsize: {cpu: 512, ram_gb: 4096}\n"
        f"clouds:\n  {kind}: {{{key}: {value}}}\n",
    )
    assert value in dumps(on(cloud, "custom", root=root)["resource"][resource]["box"])


@pytest.mark.parametrize(
    ("cloud", "cpu", "memory"),
    [
        ("one-lab", ("vcpu", 3), ("memory", 6144)),
        ("sigma-zrh", ("smp", 3), ("memory", 6 * 1024**3)),
        ("vcd-org", ("cpus", 3), ("memory", 6144)),
    ],
)
def test_clouds_without_types_get_exactly_the_custom_size(
    cloud: str, cpu: tuple[str, int], memory: tuple[str, int], tmp_path: Path
) -> None:
    resource = SEEDS[cloud][1]
    root = write_recipes(tmp_path, "image: debian-12\nsize: {cpu: 3, ram_gb: 6, disk_gb: 30}\n")
    box = on(cloud, "custom", root=root)["resource"][resource]["box"]
    assert (box[cpu[0]], box[memory[0]]) == (cpu[1], memory[1])


@pytest.mark.parametrize("kind", sorted(NO_PROVIDER))
def test_types_without_a_provider_get_a_clear_answer(kind: str) -> None:
    with pytest.raises(RecipeInvalid) as err:
        parse_clouds_text(f"clouds:\n  old:\n    type: {kind}\n    url: x\n")
    assert str(err.value) == (
        f"clouds.yaml:3:11: clouds.old.type: type `{kind}` has no maintained Terraform "
        f"provider; {NO_PROVIDER[kind]} (mapped types: {', '.join(cloud_types())})"
    )


# -- cloud-specific choices ---------------------------------------------------------------


def test_google_labels_fit_googles_alphabet() -> None:
    web = on("gcp-eu")["resource"]["google_compute_instance"]["web"]
    assert web["labels"]["slipstream-instance"] == '${replace(each.value.instance, ".", "-")}'
    assert web["labels"]["slipstream-service"] == "${lower(var.service)}"
    assert "slipstream-description" not in web["labels"]
    assert web["metadata"]["slipstream-description"].startswith("Load-balanced")
    assert web["tags"] == ["ss-${var.run_id}-web"]
    assert web["name"] == "ss-${var.run_id}-web-${each.key}"


def test_azure_uses_an_existing_group_and_subnet_when_given() -> None:
    clouds = with_settings("az-we", resource_group="ops-rg", subnet_id="/subscriptions/s/x")
    doc = on("az-we", "cluster", clouds)
    assert doc["data"] == {"azurerm_resource_group": {"run": {"name": "ops-rg"}}}
    assert not {"azurerm_resource_group", "azurerm_virtual_network"} & set(doc["resource"])
    nic = doc["resource"]["azurerm_network_interface"]["head"]
    assert nic["ip_configuration"][0]["subnet_id"] == "/subscriptions/s/x"
    assert nic["resource_group_name"] == "${data.azurerm_resource_group.run.name}"


def test_azure_without_public_addresses() -> None:
    doc = on("az-we", "cluster", with_settings("az-we", public_ip=False))
    assert "azurerm_public_ip" not in doc["resource"]
    assert "address = r.private_ip_address" in doc["output"]["instances"]["value"]


def test_ibm_without_floating_ips_uses_the_private_address() -> None:
    doc = on("ibm-eu", "cluster", with_settings("ibm-eu", floating_ip=False))
    assert "ibm_is_floating_ip" not in doc["resource"] and "locals" not in doc
    assert "primary_ip[0].address" in doc["output"]["instances"]["value"]


def test_ibm_security_groups_let_traffic_out() -> None:
    rules = on("ibm-eu", "cluster")["resource"]["ibm_is_security_group_rule"]
    assert rules["head-out"] == {
        "group": "${ibm_is_security_group.head.id}",
        "direction": "outbound",
        "remote": "0.0.0.0/0",
    }


def test_vcd_without_a_vdc_group_leaves_the_firewall_alone() -> None:
    doc = on("vcd-org", "cluster", with_settings("vcd-org", vdc_group_id=None))
    assert [r for r in doc["resource"] if "nsxt" in r] == []
    assert "security_tags" not in doc["resource"]["vcd_vm"]["head"]


def test_cloudstack_service_offerings_setting_renames_sizes() -> None:
    doc = on("cs-zone", "cluster", with_settings("cs-zone", service_offerings={"medium": "2C-4G"}))
    assert doc["resource"]["cloudstack_instance"]["worker"]["service_offering"] == "2C-4G"


def test_cloudsigma_meta_keys_fit_the_provider() -> None:
    meta = on("sigma-zrh")["resource"]["cloudsigma_server"]["web"]["meta"]
    assert max(len(k) for k in meta) <= 32
    assert meta["cloudinit-user-data"] == user_data()
