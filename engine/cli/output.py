"""What the commands share on the way out: JSON documents on stdout, problems, event lines.

Results go to stdout, progress and errors to stderr. Imports Typer, the standard library and
the engine's stdlib-only base (``engine.canonical``, ``engine.errors``) only.

Example:
    >>> print_json({"ok": True})
    {
      "ok": true
    }
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from engine.canonical import dumps

# Events read from the store at a time, page after page.
PAGE = 1000

if TYPE_CHECKING:
    from engine.errors import Problem
    from engine.store.runstore import Event


def print_json(doc: Any) -> None:
    """``doc`` as canonical JSON on stdout (sorted keys, 2-space indent, one final newline)."""
    typer.echo(dumps(doc), nl=False)


def fail(problems: list[Problem], as_json: bool, what: str) -> NoReturn:
    """Print every problem (as a JSON document with ``--json``) and exit 1.

    Example: ``slipstream validate bad.yaml`` prints ``bad.yaml:4:1: unknown key `colour```
    on stdout, then ``validate: 1 problem(s)`` on stderr.
    """
    if as_json:
        print_json({"ok": False, "problems": [p.to_json() for p in problems]})
    else:
        for problem in problems:
            typer.echo(str(problem))
        typer.echo(f"{what}: {len(problems)} problem(s)", err=True)
    raise typer.Exit(1)


def event_line(event: Event) -> str:
    """One event as a terminal line: time, kind, message.

    Example: ``07:05:38 state     Provisioning → Executing``.
    """
    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    return f"{stamp} {event.kind:<9} {event.message}"
