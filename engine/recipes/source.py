"""RecipeSource: what the component and deployment builders need from the loader.

The builders check meaning and ask for the components they reference; the loader finds,
parses and caches them. This protocol is the builders' view of the loader, so neither
module imports the other (the loader imports the builders, never the reverse).

Example:
    >>> from engine.recipes.loader import RecipeLoader
    >>> from engine.recipes.clouds import CloudsConfig
    >>> isinstance(RecipeLoader(None, CloudsConfig.default()), RecipeSource)
    True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from engine.errors import Mark, Problem
from engine.recipes.clouds import CloudsConfig
from engine.recipes.finder import RecipeFinder
from engine.recipes.model import Component


@runtime_checkable
class RecipeSource(Protocol):
    """Problems found so far, where recipes are found, the clouds, and components by name."""

    problems: list[Problem]
    finder: RecipeFinder
    clouds: CloudsConfig

    def component(self, name: str, asked_at: Mark) -> Component | None:
        """The component called ``name``, or None with the reason recorded at ``asked_at``."""
        ...
