"""What a scale request says: one node, instances to add or to remove (pure parsing).

``web=+2`` adds two instances of ``web``, ``web=-1`` removes one (the newest), and
``--remove web.3`` removes that one. One action scales one node in one direction, as
SlipStream's did (``$SLIPSTREAM_SCALING_NODE`` names one node).

Example:
    >>> parse_scale(["worker=+2"], [])
    ScaleAction(node='worker', add=2, remove_count=0, remove=())
    >>> parse_scale([], ["worker.3"]).remove
    ('worker.3',)
    >>> parse_scale(["worker=2"], [])
    Traceback (most recent call last):
    ...
    engine.errors.UsageError: scale: `worker=2`: say NODE=+N or NODE=-N
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import UsageError

#: The most instances one scale action may add or remove.
MAX_PER_ACTION = 100
_CHANGE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,62})=([+-])([0-9]{1,6})$")
_INSTANCE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,62})\.([1-9][0-9]{0,5})$")


@dataclass(frozen=True, slots=True)
class ScaleAction:
    """Add ``add`` instances to ``node``, or remove ``remove_count`` of its newest ones, or
    remove the named instances ``remove``."""

    node: str
    add: int = 0
    remove_count: int = 0
    remove: tuple[str, ...] = ()

    @property
    def adds(self) -> bool:
        return self.add > 0

    def describe(self) -> str:
        """``worker=+2``, ``worker=-1`` or ``--remove worker.3 worker.4``."""
        if self.add:
            return f"{self.node}=+{self.add}"
        if self.remove_count:
            return f"{self.node}=-{self.remove_count}"
        return "--remove " + " ".join(self.remove)


def parse_scale(changes: Sequence[str], remove: Sequence[str]) -> ScaleAction:
    """A :class:`ScaleAction` from ``NODE=+N`` / ``NODE=-N`` texts and instance names;
    :class:`UsageError` for anything else (nothing is changed)."""
    nodes: set[str] = set()
    add = drop = 0
    for text in changes:
        match = _CHANGE.match(text.strip())
        if not match:
            raise UsageError(f"scale: `{text}`: say NODE=+N or NODE=-N")
        node, sign, count = match.group(1), match.group(2), int(match.group(3))
        if count == 0:
            raise UsageError(f"scale: `{text}`: the count must be at least 1")
        nodes.add(node)
        if sign == "+":
            add += count
        else:
            drop += count
    names: list[str] = []
    for name in remove:
        match = _INSTANCE.match(name.strip())
        if not match:
            raise UsageError(f"scale: --remove `{name}`: say NODE.INDEX (e.g. web.3)")
        nodes.add(match.group(1))
        if name.strip() not in names:
            names.append(name.strip())
    if not nodes:
        raise UsageError("scale: nothing to do: give NODE=+N, NODE=-N or --remove NODE.INDEX")
    if len(nodes) > 1:
        raise UsageError(f"scale: one node per action, not {', '.join(sorted(nodes))}")
    if sum(1 for x in (add, drop, len(names)) if x) > 1:
        raise UsageError("scale: one direction per action: add, or remove")
    count = add or drop or len(names)
    if count > MAX_PER_ACTION:
        raise UsageError(f"scale: {count} instances in one action; at most {MAX_PER_ACTION}")
    return ScaleAction(nodes.pop(), add, drop, tuple(names))
