"""Finding recipe files by name: first under the recipe root, then in ``templates/``.

A recipe named ``web`` lives in a file ``web.yaml`` (or ``web.yml``) anywhere below a
search root; hidden folders and the service home are skipped. A folder that is not a
recipe root (no Git checkout, no ``slipstream.yaml``: ``walk=False``) is searched itself,
never below: from ``/tmp`` or ``/``, walking would pick up whatever anyone left there. A
file that is a symlink out of its search root is never taken (:meth:`escapes`).

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

    def __init__(
        self, root: Path | None, templates_dir: Path | None = None, walk: bool = True
    ) -> None:
        self.roots: list[Path] = []
        if root is not None:
            self.roots.append(root.resolve())
        self.roots.append((templates_dir or templates.TEMPLATES_DIR).resolve())
        # Whether each root is searched below itself (the shipped templates always are).
        self._walk = [walk] * (len(self.roots) - 1) + [True]
        self._index: list[dict[str, list[Path]]] | None = None

    def _build(self) -> list[dict[str, list[Path]]]:
        indexes: list[dict[str, list[Path]]] = []
        for root, walk in zip(self.roots, self._walk, strict=True):
            index: dict[str, list[Path]] = {}
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = (
                    sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
                    if walk
                    else []
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

    def escapes(self, path: Path) -> Path | None:
        """Where ``path`` really is when that is outside the search root it was found in
        (a symlink out of it), else None."""
        resolved = path.resolve()
        for root in self.roots:
            if path.absolute().is_relative_to(root):
                return None if resolved.is_relative_to(root) else resolved
        return None

    def display(self, path: Path) -> str:
        """How a file is named in messages: relative to its search root when possible."""
        for where in (path.absolute(), path.resolve()):  # a symlink by its own name first
            for root in self.roots:
                if where.is_relative_to(root):
                    prefix = "templates/" if root == self.roots[-1] else ""
                    return prefix + str(where.relative_to(root))
        return str(path)
