"""Finding recipe files by name: first under the recipe root, then in ``templates/``.

A recipe named ``web`` lives in a file ``web.yaml`` (or ``web.yml``) anywhere below a
search root; hidden folders and the service home are skipped.

Example:
    >>> finder = RecipeFinder(None)
    >>> finder.find("webapp").name
    'webapp.yaml'
"""

from __future__ import annotations

import os
from pathlib import Path

import templates

SUFFIXES = (".yaml", ".yml")
SKIP_DIRS = {"node_modules", "__pycache__", "venv"}


class RecipeFinder:
    """Indexes recipe files by their stem, under the root and then the shipped templates."""

    def __init__(self, root: Path | None, templates_dir: Path | None = None) -> None:
        self.roots: list[Path] = []
        if root is not None:
            self.roots.append(root.resolve())
        self.roots.append((templates_dir or templates.TEMPLATES_DIR).resolve())
        self._index: list[dict[str, list[Path]]] | None = None

    def _build(self) -> list[dict[str, list[Path]]]:
        indexes: list[dict[str, list[Path]]] = []
        for root in self.roots:
            index: dict[str, list[Path]] = {}
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(
                    d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
                )
                for filename in sorted(filenames):
                    stem, dot, ext = filename.rpartition(".")
                    if dot and f".{ext}" in SUFFIXES:
                        index.setdefault(stem, []).append(Path(dirpath) / filename)
            indexes.append(index)
        return indexes

    def candidates(self, name: str) -> list[Path]:
        """Files that may hold recipe ``name``, from the first search root that has any."""
        if self._index is None:
            self._index = self._build()
        for index in self._index:
            if name in index:
                return index[name]
        return []

    def names(self) -> list[str]:
        """Every recipe name found below any search root, sorted (for suggestions)."""
        if self._index is None:
            self._index = self._build()
        return sorted({name for index in self._index for name in index})

    def find(self, name: str) -> Path | None:
        """The first candidate for ``name`` (the loader checks kind and name)."""
        found = self.candidates(name)
        return found[0] if found else None

    def display(self, path: Path) -> str:
        """How a file is named in messages: relative to its search root when possible."""
        resolved = path.resolve()
        for root in self.roots:
            try:
                rel = resolved.relative_to(root)
            except ValueError:
                continue
            prefix = "templates/" if root == self.roots[-1] else ""
            return prefix + str(rel)
        return str(path)
