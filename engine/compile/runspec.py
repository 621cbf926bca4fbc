"""The run spec: what the coordination layer needs to know of a deployment, as plain JSON.

Stored with the run, so a server restarted later (or another worker) coordinates the run
without reloading recipes. Deployment inputs are resolved to values here.

Example:
    >>> from engine.recipes.clouds import CloudsConfig
    >>> from engine.recipes.loader import RecipeLoader
    >>> cfg = CloudsConfig.default()
    >>> spec = build_spec(RecipeLoader(None, cfg).deployment("webapp"), cfg)
    >>> spec["nodes"]["web"]["inputs"]["db_url"]
    {'from': 'db.1:url'}
"""

from __future__ import annotations

from typing import Any

from engine.recipes.clouds import CloudsConfig
from engine.recipes.model import Deployment, FromInput, FromOutput, LiteralValue
from providers_map.size import Size


def build_spec(dep: Deployment, clouds: CloudsConfig) -> dict[str, Any]:
    """A JSON-able description of every node: inputs, outputs, scripts, placement."""
    nodes: dict[str, Any] = {}
    for node in dep.nodes.values():
        comp = node.component
        inputs: dict[str, Any] = {}
        for name, spec in comp.inputs.items():
            binding = node.bindings.get(name)
            if isinstance(binding, FromOutput):
                inputs[name] = {"from": binding.text}
            elif isinstance(binding, FromInput):
                inputs[name] = {"value": dep.values.get(binding.name) or ""}
            elif isinstance(binding, LiteralValue):
                inputs[name] = {"value": binding.value}
            else:
                inputs[name] = {"value": spec.default or ""}
        sensitive = sorted(k for k, s in comp.inputs.items() if s.sensitive)
        sensitive += sorted(
            name
            for name, b in node.bindings.items()
            if isinstance(b, FromInput) and dep.inputs[b.name].sensitive and name not in sensitive
        )
        nodes[node.name] = {
            "component": comp.name,
            "multiplicity": node.multiplicity,
            "clouds": list(node.clouds),
            "cloud_types": {c: clouds.get(c).type for c in node.clouds},
            "image": comp.image,
            "size": size_text(comp.size),
            "packages": list(comp.packages),
            "inputs": inputs,
            "outputs": list(comp.outputs),
            "output_defaults": {
                k: o.default for k, o in comp.outputs.items() if o.default is not None
            },
            "sensitive": sensitive,
            "scripts": {
                k: [{"component": p.component, "text": p.text} for p in parts]
                for k, parts in comp.scripts.items()
            },
            "max_failures": node.max_failures,
        }
    return {
        "deployment": dep.name,
        "scalable": dep.scalable,
        "keep_running": dep.keep_running,
        "timeout_s": dep.timeout_s,
        "nodes": nodes,
    }


def size_text(size: Size) -> str:
    """A size as SlipStream's ``service-offer`` shows it here: its name, or its numbers.

    >>> size_text(Size.named("small")), size_text(Size(2, 4.0, 20))
    ('small', 'cpu=2,ram_gb=4,disk_gb=20')
    """
    return size.name or f"cpu={size.cpu},ram_gb={size.ram_gb:g},disk_gb={size.disk_gb}"


def instance_names(spec: dict[str, Any]) -> list[str]:
    """Every instance of the spec, node by node: ``db.1``, ``web.1``, ``web.2``…"""
    return [
        f"{node}.{i}"
        for node, body in spec["nodes"].items()
        for i in body.get("ids") or range(1, int(body["multiplicity"]) + 1)
    ]


def sensitive_keys(spec: dict[str, Any]) -> set[str]:
    """Full keys whose values must never be shown (``web.1:admin_password``), including
    the parameters that feed a sensitive input (``db.1:password``) and every input that
    takes its value from one of those.

    >>> spec = {"nodes": {
    ...     "db": {"multiplicity": 1, "inputs": {"pw": {"value": "x"}}, "sensitive": ["pw"]},
    ...     "web": {"multiplicity": 1, "inputs": {"pw": {"from": "db.1:pw"}}}}}
    >>> sorted(sensitive_keys(spec))
    ['db.1:pw', 'web.1:pw']
    """
    keys: set[str] = set()
    chains: list[set[str]] = []
    for node, body in spec["nodes"].items():
        for name in body.get("sensitive", []):
            keys.update(f"{node}.{i}:{name}" for i in range(1, _top(body) + 1))
        for name, binding in body["inputs"].items():
            for i in range(1, _top(body) + 1):
                chain = {f"{node}.{i}:{name}"}
                while "from" in binding and binding["from"] not in chain:
                    source = str(binding["from"])
                    chain.add(source)
                    head, _, source_name = source.partition(":")
                    source_node = spec["nodes"].get(head.partition(".")[0], {})
                    binding = source_node.get("inputs", {}).get(source_name, {})
                if len(chain) > 1:
                    chains.append(chain)
    grew = True
    while grew:  # a chain touching a secret is secret all along; chains may share keys
        grew = False
        for chain in chains:
            if chain & keys and not chain <= keys:
                keys |= chain
                grew = True
    return keys


def _top(body: dict[str, Any]) -> int:
    """The highest index a node ever had (a scaled run's ``top``; removed ones included)."""
    return int(body.get("top", body["multiplicity"]))
