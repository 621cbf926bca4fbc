"""Safe YAML loading that remembers where every value came from.

Recipes are user input: this module refuses oversized files, files that are not regular
files (a FIFO, a device), files others could have written, duplicate keys and alias
bombs, and turns YAML into a tree of :class:`Located` values carrying ``file:line:column``
so that every later problem can point at its cause.

Example:
    >>> doc = parse_text("kind: component\\nname: web\\n", "web.yaml")
    >>> doc.get("name").value, str(doc.get("name").mark)
    ('web', 'web.yaml:2:7')
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import yaml

from engine.errors import Mark, Problem, RecipeInvalid

MAX_FILE_BYTES = 1024 * 1024
# A 20-node deployment is a few hundred YAML nodes; a billion-laughs file is millions.
MAX_NODES = 100_000

_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TEXT_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"}


@dataclass(slots=True)
class Located:
    """A YAML value with its position.

    ``value`` is a ``dict[str, Located]``, a ``list[Located]`` or a scalar (str, int,
    float, bool or None). ``text`` is a scalar's source text (``1.10`` stays ``"1.10"``).
    ``key_marks`` gives the position of each key of a mapping.
    """

    value: Any
    mark: Mark
    text: str = ""
    key_marks: dict[str, Mark] = field(default_factory=dict)

    def get(self, key: str) -> Located | None:
        """The child under ``key`` of a mapping, or None."""
        if isinstance(self.value, dict):
            child: Located | None = self.value.get(key)
            return child
        return None

    def key_mark(self, key: str) -> Mark:
        """Where ``key`` is written, or the mapping's own position."""
        return self.key_marks.get(key, self.mark)

    def plain(self) -> Any:
        """The value as plain Python data (dicts, lists, scalars)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def as_text(self) -> str:
        """A scalar as text, exactly as written (``true`` stays ``"true"``)."""
        if self.value is None:
            return ""
        if isinstance(self.value, str):
            return self.value
        return self.text or str(self.value)


@overload
def parse_file(path: Path, display: str | None = None) -> Located: ...


@overload
def parse_file(path: Path, display: str | None = None, *, empty_ok: bool) -> Located | None: ...


def parse_file(path: Path, display: str | None = None, *, empty_ok: bool = False) -> Located | None:
    """Parse one YAML file after :func:`read_file`'s checks; ``empty_ok``: None for a file
    with no document in it (else that is a problem).

    Raises :class:`RecipeInvalid` with the location of the first syntax problem.
    """
    name = display or str(path)
    raw = read_file(path, name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeInvalid([Problem(Mark(name, 0, 0), "file is not UTF-8 text")]) from exc
    if empty_ok:
        node = _compose(text, name)
        return None if node is None else _Builder(name).build(node)
    return parse_text(text, name)


def read_file(path: Path, name: str) -> bytes:
    """The bytes of a file others cannot have written, read at most
    :data:`MAX_FILE_BYTES` of: a regular file (a FIFO would hang, ``/dev/zero`` never
    ends), owned by this user or root, not writable by everyone.

    >>> import tempfile
    >>> fifo = Path(tempfile.mkdtemp()) / "web.yaml"
    >>> os.mkfifo(fifo)
    >>> read_file(fifo, "web.yaml")
    Traceback (most recent call last):
    ...
    engine.errors.RecipeInvalid: web.yaml: not a regular file (a FIFO): refused
    """

    def refused(why: str) -> RecipeInvalid:
        return RecipeInvalid([Problem(Mark(name, 0, 0), why)])

    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise refused(f"cannot read file: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refused(f"not a regular file ({_file_kind(info.st_mode)}): refused")
        if info.st_uid not in (os.geteuid(), 0):
            raise refused(
                f"owned by uid {info.st_uid}, not by you (uid {os.geteuid()}) or root: refused, "
                "as anyone who can write it decides what it deploys"
            )
        if info.st_mode & stat.S_IWOTH:
            raise refused(
                f"anyone may write it (mode {stat.S_IMODE(info.st_mode):04o}): refused, "
                "as anyone who can write it decides what it deploys"
            )
        if info.st_size > MAX_FILE_BYTES:
            raise refused(f"file is {info.st_size} bytes, over the {MAX_FILE_BYTES}-byte limit")
        raw = handle.read(MAX_FILE_BYTES + 1)  # it may have grown since
    if len(raw) > MAX_FILE_BYTES:
        raise refused(f"file is over the {MAX_FILE_BYTES}-byte limit")
    return raw


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((kind for test, kind in kinds if test(mode)), "not a file")


def parse_text(text: str, name: str) -> Located:
    """Parse YAML text holding one document; an empty text is an error."""
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise RecipeInvalid(
            [Problem(Mark(name, 0, 0), f"file is over the {MAX_FILE_BYTES}-byte limit")]
        )
    node = _compose(text, name)
    if node is None:
        raise RecipeInvalid(
            [Problem(Mark(name, 1, 1), "file is empty: expected a mapping with `kind`")]
        )
    return _Builder(name).build(node)


def _compose(text: str, name: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        reason = exc.problem or exc.context or "YAML syntax error"
        if exc.problem and exc.context and exc.context_mark:
            start = exc.context_mark
            reason += (
                f" ({exc.context} started at line {start.line + 1}, column {start.column + 1})"
            )
        raise RecipeInvalid(
            [Problem(Mark(name, line, col), f"YAML syntax error: {reason}")]
        ) from exc
    except yaml.YAMLError as exc:
        raise RecipeInvalid([Problem(Mark(name, 0, 0), f"YAML error: {exc}")]) from exc


class _Builder:
    """Turns a composed YAML node graph into :class:`Located` values."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.problems: list[Problem] = []
        self.constructor = yaml.constructor.SafeConstructor()

    def mark(self, node: yaml.Node) -> Mark:
        return Mark(self.name, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, root: yaml.Node) -> Located:
        result = self.node(root, depth=0)
        if self.problems:
            raise RecipeInvalid(self.problems)
        return result

    def node(self, node: yaml.Node, depth: int) -> Located:
        self.count += 1
        if self.count > MAX_NODES or depth > 200:
            raise RecipeInvalid(
                [
                    Problem(
                        self.mark(node),
                        f"document expands to more than {MAX_NODES} values (alias bomb?)",
                    )
                ]
            )
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            return Located([self.node(item, depth + 1) for item in node.value], self.mark(node))
        assert isinstance(node, yaml.ScalarNode)
        if node.tag in _TEXT_TAGS:
            return Located(node.value, self.mark(node), node.value)
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problems.append(Problem(self.mark(node), f"bad value: {exc}"))
            value = node.value
        return Located(value, self.mark(node), str(node.value))

    def mapping(self, node: yaml.MappingNode, depth: int) -> Located:
        out: dict[str, Located] = {}
        marks: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(
                    Problem(self.mark(key_node), "merge keys (`<<`) are not supported")
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    Problem(self.mark(key_node), "mapping keys must be plain text")
                )
                continue
            key = str(key_node.value)
            if key in out:
                first = marks[key]
                self.problems.append(
                    Problem(
                        self.mark(key_node), f"duplicate key `{key}` (first at line {first.line})"
                    )
                )
                continue
            marks[key] = self.mark(key_node)
            out[key] = self.node(value_node, depth + 1)
        return Located(out, self.mark(node), key_marks=marks)
