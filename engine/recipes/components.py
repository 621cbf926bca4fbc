"""Building a valid :class:`Component` from a structurally checked document.

Inheritance (``image: <component>``) merges inputs, outputs, packages and ports down the
chain; scripts keep every ancestor's part, parent first; size and cloud overrides are
inherited unless the child sets them.

Example:
    >>> from engine.recipes.clouds import CloudsConfig
    >>> from engine.recipes.loader import RecipeLoader
    >>> from engine.errors import Mark
    >>> web = RecipeLoader(None, CloudsConfig.default()).component("webapp-web", Mark("x", 0, 0))
    >>> web.chain
    ('ubuntu', 'webapp-web')
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine.errors import Problem
from engine.recipes.inputs import RESERVED, parse_specs
from engine.recipes.model import Component, OutputSpec, ScriptPart, frozen_map
from engine.recipes.schema import INSTALL_SCRIPTS, SCRIPT_NAMES
from engine.recipes.source import RecipeSource
from engine.recipes.structure import check
from engine.recipes.yamlsrc import Located
from providers_map import cloud_types, mapping_for
from providers_map.catalog import native_images
from providers_map.size import Size


class ComponentBuilder:
    """Checks a component's meaning and resolves its inheritance chain."""

    def __init__(self, loader: RecipeSource) -> None:
        self.loader = loader

    @property
    def problems(self) -> list[Problem]:
        return self.loader.problems

    def build(self, doc: Located) -> Component | None:
        body: dict[str, Located] = doc.value
        name = str(body["name"].value)
        before = len(self.problems)
        image_node = body["image"]
        image = str(image_node.value)
        parent: Component | None = None
        if image not in native_images():
            if not self.loader.finder.candidates(image):
                natives = ", ".join(sorted(native_images()))
                self.problems.append(
                    Problem(
                        image_node.mark,
                        f"image `{image}` is neither a native image ({natives}) nor a "
                        f"component: no {image}.yaml under the recipe root or in templates/",
                    )
                )
                return None
            parent = self.loader.component(image, image_node.mark)
            if parent is None:
                return None

        inputs = parse_specs(body.get("inputs"), self.problems, deployment=False)
        outputs = self._outputs(body.get("outputs"))
        for clash in sorted(set(inputs) & set(outputs)):
            self.problems.append(
                Problem(
                    body["outputs"].key_mark(clash),
                    f"`{clash}` is declared both as an input and an output",
                )
            )
        overrides = self._cloud_overrides(body.get("clouds"))
        if len(self.problems) > before:
            return None

        own_scripts = {k: str(v.value) for k, v in (_dict(body.get("scripts"))).items()}
        own_packages = tuple(str(p.value) for p in _list(body.get("packages")))
        own_ports = tuple(int(p.value) for p in _list(body.get("ports")))
        own_size = _size(body.get("size"))
        description = str(body["description"].value) if "description" in body else ""
        source = doc.mark.file

        if parent is None:
            chain: tuple[str, ...] = (name,)
            merged_inputs, merged_outputs = dict(inputs), dict(outputs)
            packages, ports = own_packages, own_ports
            size = own_size or Size.named("small")
            scripts: dict[str, tuple[ScriptPart, ...]] = {
                k: (ScriptPart(name, v),) for k, v in own_scripts.items()
            }
            clouds = overrides
            root_image = image
            parent_hash = ""
        else:
            chain = (*parent.chain, name)
            merged_inputs = {**parent.inputs, **inputs}
            merged_outputs = {**parent.outputs, **outputs}
            for clash in sorted(set(inputs) & set(parent.outputs)):
                self.problems.append(
                    Problem(
                        body["inputs"].key_mark(clash),
                        f"`{clash}` is an input here but an output of parent component "
                        f"`{parent.name}`",
                    )
                )
            for clash in sorted(set(outputs) & set(parent.inputs)):
                self.problems.append(
                    Problem(
                        body["outputs"].key_mark(clash),
                        f"`{clash}` is an output here but an input of parent component "
                        f"`{parent.name}`",
                    )
                )
            packages = tuple(dict.fromkeys((*parent.packages, *own_packages)))
            ports = tuple(sorted(set(parent.ports) | set(own_ports)))
            size = own_size or parent.size
            scripts = {k: tuple(v) for k, v in parent.scripts.items()}
            for key, text in own_scripts.items():
                scripts[key] = (*scripts.get(key, ()), ScriptPart(name, text))
            clouds = {k: dict(v) for k, v in parent.clouds.items()}
            for key, values in overrides.items():
                clouds[key] = {**clouds.get(key, {}), **values}
            root_image = parent.image
            parent_hash = parent.content_hash

        ordered_scripts = {k: scripts[k] for k in SCRIPT_NAMES if k in scripts}
        return Component(
            name=name,
            description=description,
            image=root_image,
            chain=chain,
            size=size,
            ports=ports,
            packages=packages,
            scripts=frozen_map(ordered_scripts),  # type: ignore[arg-type]
            inputs=frozen_map(merged_inputs),  # type: ignore[arg-type]
            outputs=frozen_map(merged_outputs),  # type: ignore[arg-type]
            clouds=frozen_map(clouds),  # type: ignore[arg-type]
            source=source,
            content_hash=_install_hash(parent_hash, root_image, own_packages, own_scripts),
        )

    def _outputs(self, section: Located | None) -> dict[str, OutputSpec]:
        outputs: dict[str, OutputSpec] = {}
        for name, node in _dict(section).items():
            if name in RESERVED:
                self.problems.append(
                    Problem(
                        section.key_mark(name) if section else node.mark,
                        f"`{name}` is a built-in parameter and cannot be declared",
                    )
                )
                continue
            body = node.value if isinstance(node.value, dict) else {}
            description = str(body["description"].value) if "description" in body else ""
            default = body["default"].as_text() if "default" in body else None
            outputs[name] = OutputSpec(name, description, default)
        return outputs

    def _cloud_overrides(self, section: Located | None) -> dict[str, dict[str, Any]]:
        """Overrides keyed by cloud type or configured cloud name, checked by their mapping."""
        result: dict[str, dict[str, Any]] = {}
        for key, node in _dict(section).items():
            if key in cloud_types():
                cloud_type = key
            elif key in self.loader.clouds.clouds:
                cloud_type = self.loader.clouds.get(key).type
            else:
                mark = section.key_mark(key) if section else node.mark
                known = ", ".join(sorted({*cloud_types(), *self.loader.clouds.names()}))
                self.problems.append(
                    Problem(mark, f"unknown cloud or cloud type `{key}` (known: {known})")
                )
                continue
            found = check(node, mapping_for(cloud_type).override_schema)
            self.problems.extend(found)
            if not found:
                result[key] = node.plain()
        return result


def _dict(node: Located | None) -> dict[str, Located]:
    return node.value if node is not None and isinstance(node.value, dict) else {}


def _list(node: Located | None) -> list[Located]:
    return node.value if node is not None and isinstance(node.value, list) else []


def _size(node: Located | None) -> Size | None:
    if node is None:
        return None
    if isinstance(node.value, str):
        return Size.named(node.value)
    body = node.plain()
    return Size(int(body["cpu"]), float(body["ram_gb"]), int(body.get("disk_gb", 10)))


def _install_hash(
    parent_hash: str, image: str, packages: tuple[str, ...], scripts: dict[str, str]
) -> str:
    """What an image build depends on: the parent's hash and this level's install steps."""
    install = {k: scripts[k] for k in INSTALL_SCRIPTS if k in scripts}
    blob = json.dumps([parent_hash, image, list(packages), install], sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
