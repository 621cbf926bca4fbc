"""Building a valid :class:`Deployment`: nodes, clouds, input values and input mappings.

Overrides (inputs, one node's inputs, clouds, multiplicity) are applied here, so a locked
input or an unknown cloud is reported exactly like a mistake in the file. A mapping may
read any parameter of its source node (an output, an input or a built-in such as
``hostname``), and mappings may point both ways between two nodes: machines publish before
they wait. Only a loop of inputs mapped to each other is refused.

Example:
    >>> from engine.recipes.clouds import CloudsConfig
    >>> from engine.recipes.loader import RecipeLoader
    >>> dep = RecipeLoader(None, CloudsConfig.default()).deployment("webapp")
    >>> dep.nodes["web"].bindings["db_url"].text
    'db.1:url'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from engine.errors import Mark, Problem
from engine.recipes.inputs import INSTANCE_BUILTINS, check_value, normalise, parse_specs
from engine.recipes.model import (
    Binding,
    Component,
    Deployment,
    FromInput,
    FromOutput,
    InputSpec,
    KeepRunning,
    LiteralValue,
    Node,
    frozen_map,
)
from engine.recipes.overrides import Overrides, option_mark
from engine.recipes.source import RecipeSource
from engine.recipes.yamlsrc import Located

DEFAULT_TIMEOUT_S = 30 * 60
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int) -> int:
    """Seconds in ``30m``, ``90s``, ``2h``, ``1d`` or a bare number of seconds.

    >>> parse_duration("30m"), parse_duration(45)
    (1800, 45)
    """
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"([0-9]+)([smhd]?)", value)
    if not match:
        raise ValueError(f"bad duration `{value}`")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


class DeploymentBuilder:
    """Checks one deployment document's meaning, with overrides applied."""

    def __init__(
        self, loader: RecipeSource, doc: Located, overrides: Overrides, require_values: bool
    ) -> None:
        self.loader = loader
        self.doc = doc
        self.body: dict[str, Located] = doc.value
        self.overrides = overrides
        self.require_values = require_values
        self.problems = loader.problems
        # Where each node input's `from:` was written, for the loop check.
        self.mapping_marks: dict[tuple[str, str], Mark] = {}

    def build(self) -> Deployment | None:
        before = len(self.problems)
        inputs = parse_specs(self.body.get("inputs"), self.problems, deployment=True)
        values = self._input_values(inputs)
        nodes_section = self.body["nodes"]
        node_docs: dict[str, Located] = nodes_section.value
        by_case: dict[str, str] = {}
        for name in node_docs:
            other = by_case.setdefault(name.lower(), name)
            if other != name:
                self.problems.append(
                    Problem(
                        nodes_section.key_mark(name),
                        f"node `{name}` differs from node `{other}` only by case "
                        "(their sandboxes and files would collide)",
                    )
                )
        for unknown in sorted(
            (
                set(self.overrides.clouds)
                | set(self.overrides.multiplicity)
                | set(self.overrides.node_inputs)
            )
            - set(node_docs)
        ):
            option = (
                "--cloud"
                if unknown in self.overrides.clouds
                else "--multiplicity"
                if unknown in self.overrides.multiplicity
                else "--input"
            )
            self.problems.append(
                Problem(
                    option_mark(option, unknown),
                    f"unknown node `{unknown}` (nodes: {', '.join(node_docs)})",
                )
            )
        components: dict[str, Component | None] = {}
        multiplicity: dict[str, int] = {}
        clouds: dict[str, tuple[str, ...]] = {}
        for name, node_doc in node_docs.items():
            body: dict[str, Located] = node_doc.value
            comp_node = body["component"]
            components[name] = self.loader.component(str(comp_node.value), comp_node.mark)
            multiplicity[name] = self.overrides.multiplicity.get(
                name, int(body["multiplicity"].value) if "multiplicity" in body else 1
            )
            clouds[name] = self._clouds(name, body)

        nodes: dict[str, Node] = {}
        for name, node_doc in node_docs.items():
            component = components[name]
            if component is None:
                continue
            bindings = self._bindings(name, node_doc, component, inputs, components, multiplicity)
            body = node_doc.value
            nodes[name] = Node(
                name=name,
                component=component,
                multiplicity=multiplicity[name],
                clouds=clouds[name],
                max_failures=int(body["max_failures"].value) if "max_failures" in body else 0,
                bindings=frozen_map(bindings),  # type: ignore[arg-type]
            )
        self._check_loops(nodes)
        if len(self.problems) > before:
            return None
        timeout = self.body.get("timeout")
        keep: KeepRunning = (
            self.body["keep_running"].value if "keep_running" in self.body else "on-success"
        )
        return Deployment(
            name=str(self.body["name"].value),
            description=str(self.body["description"].value) if "description" in self.body else "",
            inputs=frozen_map(inputs),  # type: ignore[arg-type]
            values=frozen_map(values),  # type: ignore[arg-type]
            keep_running=keep,
            timeout_s=parse_duration(timeout.value) if timeout is not None else DEFAULT_TIMEOUT_S,
            scalable=self.overrides.scalable
            or (bool(self.body["scalable"].value) if "scalable" in self.body else False),
            nodes=frozen_map(nodes),  # type: ignore[arg-type]
            source=self.doc.mark.file,
        )

    def _input_values(self, inputs: dict[str, InputSpec]) -> dict[str, str | None]:
        values: dict[str, str | None] = {k: s.default for k, s in inputs.items()}
        for key, value in self.overrides.inputs.items():
            mark = option_mark("--input", f"{key}=…")
            spec = inputs.get(key)
            if spec is None:
                known = ", ".join(inputs) or "none"
                self.problems.append(Problem(mark, f"unknown input `{key}` (inputs: {known})"))
            elif spec.locked:
                self.problems.append(
                    Problem(mark, f"input `{key}` is locked ({spec.mark}) and cannot be overridden")
                )
            elif (why := check_value(spec, value)) is not None:
                self.problems.append(Problem(mark, why))
            else:
                values[key] = normalise(spec, value)
        if self.require_values:
            for key, spec in inputs.items():
                if values[key] is None and not spec.optional:
                    self.problems.append(
                        Problem(
                            spec.mark or self.doc.mark,
                            f"input `{key}` has no default: give it a value (--input {key}=…)",
                        )
                    )
        return values

    def _clouds(self, name: str, body: dict[str, Located]) -> tuple[str, ...]:
        known = self.loader.clouds.clouds
        if name in self.overrides.clouds:
            chosen = self.overrides.clouds[name]
            for cloud in chosen:
                if cloud not in known:
                    self.problems.append(
                        Problem(
                            option_mark("--cloud", f"{name}={cloud}"), _unknown_cloud(cloud, known)
                        )
                    )
            return chosen
        node = body.get("cloud")
        if node is None:
            return ("local",)
        items = node.value if isinstance(node.value, list) else [node]
        for item in items:
            if item.value not in known:
                self.problems.append(Problem(item.mark, _unknown_cloud(str(item.value), known)))
        return tuple(str(i.value) for i in items)

    def _bindings(
        self,
        name: str,
        node_doc: Located,
        component: Component,
        inputs: dict[str, InputSpec],
        components: dict[str, Component | None],
        multiplicity: dict[str, int],
    ) -> dict[str, Binding]:
        body: dict[str, Located] = node_doc.value
        section = body.get("inputs")
        given: dict[str, Located] = section.value if section is not None else {}
        bindings: dict[str, Binding] = {}
        for key, value_node in given.items():
            key_mark = section.key_mark(key) if section is not None else node_doc.mark
            spec = component.inputs.get(key)
            if spec is None:
                declared = ", ".join(component.inputs) or "none"
                self.problems.append(
                    Problem(
                        key_mark,
                        f"component `{component.name}` has no input `{key}` (inputs: {declared})",
                    )
                )
                continue
            binding = self._binding(spec, value_node, inputs, components, multiplicity)
            if binding is not None:
                bindings[key] = binding
                if isinstance(binding, FromOutput):
                    self.mapping_marks[(name, key)] = value_node.value["from"].mark
        overridden = self._node_overrides(name, component, inputs, bindings)
        for key, spec in component.inputs.items():
            if (
                key not in given
                and key not in overridden
                and spec.default is None
                and not spec.optional
            ):
                self.problems.append(
                    Problem(
                        node_doc.mark,
                        f"node `{name}`: input `{key}` of "
                        f"component `{component.name}` has no default and "
                        "is not mapped (mark it `optional: true` to allow an empty value)",
                    )
                )
        return bindings

    def _binding(
        self,
        spec: InputSpec,
        node: Located,
        inputs: dict[str, InputSpec],
        components: dict[str, Component | None],
        multiplicity: dict[str, int],
    ) -> Binding | None:
        if not isinstance(node.value, dict):
            text = node.as_text()
            why = check_value(spec, text)
            if why:
                self.problems.append(Problem(node.mark, why))
                return None
            return LiteralValue(normalise(spec, text))
        source = node.value["from"]
        ref = str(source.value)
        mark = source.mark
        head, _, key = ref.partition(":")
        if head == "input":
            if key not in inputs:
                known = ", ".join(inputs) or "none"
                self.problems.append(
                    Problem(mark, f"`{ref}`: the deployment has no input `{key}` (inputs: {known})")
                )
                return None
            return FromInput(key)
        target, _, index_text = head.partition(".")
        index = int(index_text) if index_text else 1
        if target not in components:
            self.problems.append(
                Problem(mark, f"`{ref}`: unknown node `{target}` (nodes: {', '.join(components)})")
            )
            return None
        target_component = components[target]
        if target_component is None:
            return None
        if (
            key not in target_component.outputs
            and key not in target_component.inputs
            and key not in INSTANCE_BUILTINS
            and not key.startswith("url.")
        ):
            declared = ", ".join([*target_component.outputs, *target_component.inputs]) or "none"
            self.problems.append(
                Problem(
                    mark,
                    f"`{ref}`: component `{target_component.name}` has no parameter `{key}` "
                    f"(outputs and inputs: {declared}; built-ins: "
                    f"{', '.join(sorted(INSTANCE_BUILTINS))})",
                )
            )
            return None
        if index > multiplicity[target]:
            self.problems.append(
                Problem(mark, f"`{ref}`: node `{target}` has {multiplicity[target]} instance(s)")
            )
            return None
        return FromOutput(target, index, key)

    def _node_overrides(
        self,
        name: str,
        component: Component,
        inputs: dict[str, InputSpec],
        bindings: dict[str, Binding],
    ) -> set[str]:
        """Apply ``--input node:param=value`` to ``bindings``; the names it set."""
        done: set[str] = set()
        for key, value in self.overrides.node_inputs.get(name, {}).items():
            mark = option_mark("--input", f"{name}:{key}=…")
            spec = component.inputs.get(key)
            current = bindings.get(key)
            if spec is None:
                declared = ", ".join(component.inputs) or "none"
                self.problems.append(
                    Problem(
                        mark,
                        f"component `{component.name}` of node `{name}` has no input `{key}` "
                        f"(inputs: {declared})",
                    )
                )
            elif isinstance(current, FromInput) and inputs[current.name].locked:
                self.problems.append(
                    Problem(
                        mark,
                        f"input `{name}:{key}` takes the locked deployment input "
                        f"`{current.name}` and cannot be overridden",
                    )
                )
            elif (why := check_value(spec, value)) is not None:
                self.problems.append(Problem(mark, why))
            else:
                bindings[key] = LiteralValue(normalise(spec, value))
                self.mapping_marks.pop((name, key), None)
                done.add(key)
        return done

    def _check_loops(self, nodes: dict[str, Node]) -> None:
        """Refuse inputs mapped to each other in a loop: none of them could get a value."""
        edges: dict[tuple[str, str], tuple[str, str]] = {}
        for node in nodes.values():
            for key, binding in node.bindings.items():
                if not isinstance(binding, FromOutput) or binding.node not in nodes:
                    continue
                if binding.output in nodes[binding.node].component.inputs:
                    edges[(node.name, key)] = (binding.node, binding.output)
        reported: set[tuple[str, str]] = set()
        for start in edges:
            path = [start]
            while path[-1] in edges and edges[path[-1]] not in path:
                path.append(edges[path[-1]])
            loop_start = edges.get(path[-1])
            if loop_start is None or loop_start not in path:
                continue
            loop = path[path.index(loop_start) :]
            if reported & set(loop):
                continue
            reported |= set(loop)
            text = " → ".join(f"{n}:{k}" for n, k in [*loop, loop[0]])
            self.problems.append(
                Problem(self.mapping_marks[loop[0]], f"inputs mapped in a loop: {text}")
            )


def _unknown_cloud(cloud: str, known: Mapping[str, object]) -> str:
    return f"unknown cloud `{cloud}` (configured: {', '.join(sorted(known))})"
