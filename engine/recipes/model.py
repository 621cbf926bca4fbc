"""Valid recipes: frozen, fully defaulted types that the compiler and engine trust.

Only :mod:`engine.recipes.loader` builds these, after every check has passed.

Example:
    >>> FromOutput("db", 1, "url").text
    'db.1:url'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal as TypingLiteral

from engine.errors import Mark
from providers_map.size import Size

InputType = TypingLiteral["string", "int", "bool", "enum"]
KeepRunning = TypingLiteral["always", "on-success", "on-error", "never"]


def frozen_map(items: Mapping[str, object] | None = None) -> MappingProxyType[str, object]:
    """A read-only, insertion-ordered view of ``items``."""
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True, slots=True)
class InputSpec:
    """A declared input; ``default`` is text (None: must be mapped or given, unless
    ``optional``: then it is empty)."""

    name: str
    type: InputType = "string"
    default: str | None = None
    description: str = ""
    choices: tuple[str, ...] = ()
    sensitive: bool = False
    locked: bool = False
    mark: Mark | None = field(default=None, compare=False)
    optional: bool = False


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """A declared output: a runtime parameter an instance publishes with ``ss-set``;
    ``default`` (when not None) is its value until then."""

    name: str
    description: str = ""
    default: str | None = None


@dataclass(frozen=True, slots=True)
class ScriptPart:
    """One component's text for one script; a script runs its parts parent first."""

    component: str
    text: str


@dataclass(frozen=True, slots=True)
class Component:
    """A component with its inheritance chain resolved.

    ``image`` is the native image at the root of the chain; ``chain`` lists the component
    names from the root parent down to this one.
    """

    name: str
    description: str
    image: str
    chain: tuple[str, ...]
    size: Size
    ports: tuple[int, ...]
    packages: tuple[str, ...]
    scripts: Mapping[str, tuple[ScriptPart, ...]]
    inputs: Mapping[str, InputSpec]
    outputs: Mapping[str, OutputSpec]
    clouds: Mapping[str, Mapping[str, object]]
    source: str
    content_hash: str

    @property
    def virtual(self) -> bool:
        """True when there is nothing to bake into an image."""
        return not (
            self.packages or self.scripts.get("pre_install") or self.scripts.get("post_install")
        )


@dataclass(frozen=True, slots=True)
class FromOutput:
    """A node input mapped to a parameter of another node: an output, an input or a
    built-in (``db:url`` means ``db.1:url``)."""

    node: str
    index: int
    output: str

    @property
    def text(self) -> str:
        return f"{self.node}.{self.index}:{self.output}"


@dataclass(frozen=True, slots=True)
class FromInput:
    """A node input mapped to a deployment input."""

    name: str

    @property
    def text(self) -> str:
        return f"input:{self.name}"


@dataclass(frozen=True, slots=True)
class LiteralValue:
    """A node input given as a literal in the recipe."""

    value: str


Binding = FromOutput | FromInput | LiteralValue


@dataclass(frozen=True, slots=True)
class Node:
    """A node of a deployment: ``multiplicity`` instances of one component."""

    name: str
    component: Component
    multiplicity: int
    clouds: tuple[str, ...]
    max_failures: int
    bindings: Mapping[str, Binding]

    def cloud_of(self, index: int) -> str:
        """The cloud of instance ``index`` (from 1): clouds are used round-robin."""
        return self.clouds[(index - 1) % len(self.clouds)]

    def instance_ids(self) -> range:
        return range(1, self.multiplicity + 1)


@dataclass(frozen=True, slots=True)
class Deployment:
    """A valid deployment with every override applied; ``inputs`` carry final values."""

    name: str
    description: str
    inputs: Mapping[str, InputSpec]
    values: Mapping[str, str | None]
    keep_running: KeepRunning
    timeout_s: int
    scalable: bool
    nodes: Mapping[str, Node]
    source: str

    def clouds_used(self) -> tuple[str, ...]:
        """Every cloud that has at least one instance, sorted."""
        used = {n.cloud_of(i) for n in self.nodes.values() for i in n.instance_ids()}
        return tuple(sorted(used))

    def instance_count(self) -> int:
        return sum(n.multiplicity for n in self.nodes.values())
