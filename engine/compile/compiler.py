"""The compiler: a valid deployment and the clouds configuration in, one Terraform JSON
root module per cloud out. Pure: no I/O, and the same input always gives the same bytes.

Example:
    >>> from engine.recipes.loader import RecipeLoader
    >>> cfg = CloudsConfig.default()
    >>> roots = compile_deployment(RecipeLoader(None, cfg).deployment("webapp"), cfg)
    >>> list(roots)
    ['local']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.canonical import dumps
from engine.errors import CloudError
from engine.recipes.clouds import CloudsConfig
from engine.recipes.model import Deployment, Node
from providers_map import mapping_for
from providers_map.base import CloudRoot, NodePlacement

# Built images to boot: (node, cloud) → image id on that cloud (see engine.runs.imagefactory).
BuiltImages = Mapping[tuple[str, str], str]


def placements(
    deployment: Deployment, cloud: str, cloud_type: str, images: BuiltImages | None = None
) -> tuple[NodePlacement, ...]:
    """The instances of every node that land on ``cloud``, in deployment order."""
    out: list[NodePlacement] = []
    for node in deployment.nodes.values():
        indices = tuple(i for i in node.instance_ids() if node.cloud_of(i) == cloud)
        if indices:
            built = (images or {}).get((node.name, cloud), "")
            out.append(_placement(node, indices, cloud, cloud_type, built))
    return tuple(out)


def _placement(
    node: Node, indices: tuple[int, ...], cloud: str, cloud_type: str, built: str = ""
) -> NodePlacement:
    comp = node.component
    overrides: dict[str, Any] = {**comp.clouds.get(cloud_type, {}), **comp.clouds.get(cloud, {})}
    return NodePlacement(
        node=node.name,
        component=comp.name,
        description=comp.description,
        indices=indices,
        image=comp.image,
        size=comp.size,
        ports=comp.ports,
        packages=comp.packages,
        overrides=overrides,
        built_image=built,
    )


def cloud_roots(
    deployment: Deployment, clouds: CloudsConfig, images: BuiltImages | None = None
) -> dict[str, CloudRoot]:
    """One :class:`CloudRoot` per cloud that has instances."""
    roots: dict[str, CloudRoot] = {}
    for name in deployment.clouds_used():
        cloud = clouds.get(name)
        roots[name] = CloudRoot(
            cloud=name,
            settings=dict(cloud.settings),
            deployment=deployment.name,
            description=deployment.description,
            placements=placements(deployment, name, cloud.type, images),
        )
    return roots


def compile_deployment(
    deployment: Deployment, clouds: CloudsConfig, images: BuiltImages | None = None
) -> dict[str, dict[str, Any]]:
    """Terraform JSON documents by cloud name; :class:`CloudError` when a cloud cannot hold
    its share (every cloud's reasons are collected first). ``images``: built images the
    nodes boot instead of their native image."""
    documents: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    for name, root in cloud_roots(deployment, clouds, images).items():
        mapping = mapping_for(clouds.get(name).type)
        found = mapping.check(root)
        reasons.extend(f"cloud `{name}`: {r}" for r in found)
        if not found:
            documents[name] = mapping.render(root)
    if reasons:
        raise CloudError("\n".join(reasons))
    return documents


def compile_text(deployment: Deployment, clouds: CloudsConfig) -> dict[str, str]:
    """Like :func:`compile_deployment`, as canonical JSON text per cloud."""
    return {name: dumps(doc) for name, doc in compile_deployment(deployment, clouds).items()}
