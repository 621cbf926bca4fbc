"""What the image factory deploys and snapshots, as pure functions (DESIGN section 10).

A build is a run of a one-node deployment: one instance of the component, booted from the
native image at the root of its chain, whose agent runs only the install steps of the whole
chain (parent first: ``pre_install``, ``packages``, ``post_install``). Once the run is
Ready, clouds that snapshot through Terraform get :func:`build_root`: the same root plus the
mapping's snapshot resource and an ``image`` output holding the new image's id.

Example:
    >>> from engine.recipes.clouds import CloudsConfig
    >>> from engine.recipes.loader import RecipeLoader
    >>> from engine.errors import Mark
    >>> comp = RecipeLoader(None, CloudsConfig.default()).component("ubuntu", Mark("t", 0, 0))
    >>> dep = build_deployment(comp, "local")
    >>> dep.name, list(dep.nodes), dict(dep.nodes["ubuntu"].component.scripts)
    ('build-ubuntu', ['ubuntu'], {})
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

from engine.compile.compiler import compile_deployment
from engine.recipes.clouds import CloudsConfig
from engine.recipes.model import Component, Deployment, Node
from engine.recipes.schema import INSTALL_SCRIPTS
from providers_map import mapping_for
from providers_map.base import SnapshotUnsupported
from providers_map.machines import image_data_name

BUILD_TIMEOUT_S = 3600


def build_deployment(component: Component, cloud: str) -> Deployment:
    """The one-node deployment that prepares ``component`` on ``cloud``: its install steps
    only (``deployment``, ``reporting`` and the scaling scripts are left out)."""
    scripts = {k: v for k, v in component.scripts.items() if k in INSTALL_SCRIPTS}
    install_only = replace(component, scripts=MappingProxyType(scripts))
    node = Node(component.name, install_only, 1, (cloud,), 0, MappingProxyType({}))
    return Deployment(
        name=f"build-{component.name}",
        description=f"image build of `{component.name}` ({component.content_hash[:12]})",
        inputs=MappingProxyType({}),
        values=MappingProxyType({}),
        keep_running="always",  # the factory snapshots at Ready, then destroys
        timeout_s=BUILD_TIMEOUT_S,
        scalable=False,
        nodes=MappingProxyType({component.name: node}),
        source=component.source,
    )


def image_name(component: Component) -> str:
    """The name a snapshot gets on its cloud: component and content hash.

    >>> from types import SimpleNamespace
    >>> image_name(SimpleNamespace(name="web", content_hash="0123456789abcdef" * 4))
    'slipstream-web-0123456789ab'
    """
    return f"slipstream-{component.name}-{component.content_hash[:12]}"


def build_root(component: Component, cloud: str, clouds: CloudsConfig) -> dict[str, Any]:
    """The Terraform root that snapshots the prepared build instance on ``cloud``: the build
    deployment's root, plus the snapshot resource and an ``image`` output.

    SnapshotUnsupported for clouds that cannot make images and for ``local``, whose images
    the engine makes (:mod:`engine.runs.localimages`).
    """
    mapping = mapping_for(clouds.get(cloud).type)
    if not mapping.snapshot_resource:
        raise SnapshotUnsupported(
            f"cloud `{cloud}` (type `{mapping.type}`) makes no image through Terraform"
        )
    doc = compile_deployment(build_deployment(component, cloud), clouds)[cloud]
    name = image_name(component)
    address = f'{mapping.instance_resource}.{component.name}["1"]'
    for rtype, blocks in mapping.snapshot(address, name).items():
        doc["resource"].setdefault(rtype, {}).update(blocks)
    doc["output"]["image"] = {
        "description": "id of the image made from the prepared instance",
        "value": f"${{{mapping.snapshot_resource}.{image_data_name(name)}.id}}",
    }
    return doc


def snapshot_address(component: Component, cloud_type: str) -> str:
    """The Terraform address of the snapshot resource of :func:`build_root` (what is taken
    out of the state before the build machine is destroyed, so the image stays).

    >>> from types import SimpleNamespace
    >>> snapshot_address(SimpleNamespace(name="web", content_hash="ab" * 32), "aws")
    'aws_ami_from_instance.slipstream-web-abababababab'
    """
    mapping = mapping_for(cloud_type)
    return f"{mapping.snapshot_resource}.{image_data_name(image_name(component))}"
