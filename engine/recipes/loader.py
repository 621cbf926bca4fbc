"""RecipeLoader: YAML files in, valid frozen recipes out, or every problem at once.

Structure is checked against :mod:`engine.recipes.schema`; meaning (references, inheritance,
types of values, clouds) is checked here. A file with structural problems is not
checked further, so one mistake never cascades into misleading follow-ups.

Example:
    >>> loader = RecipeLoader(root=None, clouds=CloudsConfig.default())
    >>> dep = loader.deployment("webapp")
    >>> sorted(dep.nodes)
    ['db', 'lb', 'web']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import Mark, Problem, RecipeInvalid
from engine.recipes.clouds import CloudsConfig
from engine.recipes.components import ComponentBuilder
from engine.recipes.deployments import DeploymentBuilder
from engine.recipes.finder import RecipeFinder
from engine.recipes.model import Component, Deployment
from engine.recipes.overrides import Overrides
from engine.recipes.schema import COMPONENT, DEPLOYMENT
from engine.recipes.structure import check
from engine.recipes.yamlsrc import Located, parse_file


class RecipeLoader:
    """Loads components and deployments found under ``root`` (then ``templates/``)."""

    def __init__(
        self,
        root: Path | None,
        clouds: CloudsConfig,
        templates_dir: Path | None = None,
        *,
        walk: bool = True,
    ) -> None:
        self.finder = RecipeFinder(root, templates_dir, walk)
        self.clouds = clouds
        self.problems: list[Problem] = []
        # Each recipe used, by name: the file it came from (resolved).
        self.files: dict[str, Path] = {}
        self._docs: dict[Path, Located | None] = {}
        self._components: dict[str, Component | None] = {}
        self._stack: list[str] = []
        self._component_builder = ComponentBuilder(self)

    # -- documents -------------------------------------------------------------------

    def read(self, path: Path, display: str | None = None) -> Located | None:
        """Parse a file once; syntax problems are recorded and None returned."""
        key = path.resolve()
        if key not in self._docs:
            try:
                self._docs[key] = parse_file(path, display or self.finder.display(path))
            except RecipeInvalid as err:
                self.problems.extend(err.problems)
                self._docs[key] = None
        return self._docs[key]

    def structure(self, doc: Located, schema: dict[str, Any]) -> bool:
        """Record structural problems of ``doc``; True when there were none."""
        found = check(doc, schema)
        self.problems.extend(found)
        return not found

    # -- components ------------------------------------------------------------------

    def component(self, name: str, asked_at: Mark) -> Component | None:
        """The component called ``name``, or None with the reason recorded at ``asked_at``."""
        if name in self._stack:
            cycle = " → ".join([*self._stack[self._stack.index(name) :], name])
            self.problems.append(Problem(asked_at, f"inheritance cycle: {cycle}"))
            return None
        if name in self._components:
            return self._components[name]
        doc = self._find(name, "component", asked_at)
        result = self._build_component(doc) if doc is not None else None
        self._components[name] = result
        return result

    def _build_component(self, doc: Located) -> Component | None:
        if not self.structure(doc, COMPONENT):
            return None
        name = str(doc.value["name"].value)
        self._stack.append(name)
        try:
            return self._component_builder.build(doc)
        finally:
            self._stack.pop()

    def _find(self, name: str, kind: str, asked_at: Mark) -> Located | None:
        candidates = self.finder.candidates(name)
        if not candidates:
            self.problems.append(
                Problem(
                    asked_at,
                    f"unknown {kind} `{name}`: no {name}.yaml "
                    "under the recipe root or in templates/",
                )
            )
            return None
        for path in candidates:
            outside = self.finder.escapes(path)
            if outside is not None:
                self.problems.append(
                    Problem(
                        Mark(self.finder.display(path), 0, 0),
                        f"a symlink to {outside}, outside the recipe root: refused",
                    )
                )
                return None
            doc = self.read(path)
            if doc is None:
                return None
            kind_node = doc.get("kind")
            if kind_node is not None and kind_node.value == kind:
                declared = doc.get("name")
                if declared is not None and declared.value != name:
                    self.problems.append(
                        Problem(
                            declared.mark,
                            f"file is found as {kind} `{name}` "
                            f"but declares name `{declared.value}`",
                        )
                    )
                    return None
                self.files[name] = path.resolve()
                return doc
        found = ", ".join(self.finder.display(p) for p in candidates)
        self.problems.append(Problem(asked_at, f"`{name}` is not a {kind} ({found})"))
        return None

    # -- deployments -----------------------------------------------------------------

    def deployment(
        self, ref: str | Path, overrides: Overrides | None = None, require_values: bool = False
    ) -> Deployment:
        """Load a deployment by file path or by name; raise :class:`RecipeInvalid`."""
        path = Path(ref)
        if path.suffix in (".yaml", ".yml") or path.exists():
            # Named like every other file: relative to its recipe root when inside one.
            doc = self.read(path, self.finder.display(path) if path.is_absolute() else str(ref))
            declared = doc.get("name") if doc is not None else None
            if declared is not None:
                self.files[str(declared.value)] = path.resolve()
        else:
            doc = self._find(str(ref), "deployment", Mark(str(ref), 0, 0))
        result = None
        if doc is not None:
            result = self._build_deployment(doc, overrides or Overrides(), require_values)
        if self.problems or result is None:
            raise RecipeInvalid(self.problems or [Problem(Mark(str(ref), 0, 0), "not loaded")])
        return result

    def _build_deployment(
        self, doc: Located, overrides: Overrides, require_values: bool
    ) -> Deployment | None:
        kind = doc.get("kind")
        if kind is None or kind.value != "deployment":
            self.problems.append(Problem(doc.mark, "expected `kind: deployment`"))
            return None
        if not self.structure(doc, DEPLOYMENT):
            return None
        return DeploymentBuilder(self, doc, overrides, require_values).build()

    # -- whole files -----------------------------------------------------------------

    def validate_file(self, path: Path, display: str | None = None) -> list[Problem]:
        """Every problem of one recipe file (component or deployment), sorted."""
        before = len(self.problems)
        doc = self.read(path, display or str(path))
        if doc is not None:
            kind = doc.get("kind")
            if not isinstance(doc.value, dict) or kind is None:
                self.problems.append(
                    Problem(
                        doc.mark, "expected a mapping with `kind: component` or `kind: deployment`"
                    )
                )
            elif kind.value == "component":
                if self.structure(doc, COMPONENT):
                    name = str(doc.value["name"].value)
                    if name not in self._components:
                        self._stack.append(name)
                        try:
                            self._components[name] = self._component_builder.build(doc)
                        finally:
                            self._stack.pop()
            elif kind.value == "deployment":
                self._build_deployment(doc, Overrides(), require_values=False)
            else:
                self.problems.append(
                    Problem(
                        kind.mark,
                        f"unknown kind `{kind.as_text()}` (expected: component, deployment)",
                    )
                )
        return sorted(set(self.problems[before:]))
