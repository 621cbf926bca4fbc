"""What the commands share on the way out: JSON documents on stdout, problems, event lines,
and how runs, parameters and results are printed (embedded or as a client of a service).

Results go to stdout, progress and errors to stderr. Text that agents sent (events, status
lines, parameter values, abort messages) goes through :func:`printable` first, so it cannot
forge lines or drive the terminal. Imports Typer, the standard library and the engine's
stdlib-only base (``engine.canonical``, ``engine.errors``) only.

Example:
    >>> print_json({"ok": True})
    {
      "ok": true
    }
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from engine.canonical import dumps

if TYPE_CHECKING:
    from engine.errors import Problem
    from engine.store.runstore import Event

# Events read from the store at a time, page after page.
PAGE = 1000
# Controls (C0 but tab, DEL, C1), line and paragraph separators, and the bidirectional
# overrides that reorder what a terminal shows ("Trojan Source").
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f\u2028\u2029{_BIDI}]")  # JSON escapes the rest


def printable(text: str, newlines: bool = False) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\n``);
    ``newlines``: keep line breaks (for our own multi-line messages).

    Example:
        >>> printable("ok\\n10:00:00 state  run entered Ready\\x1b]0;pwned\\x07")
        'ok\\\\n10:00:00 state  run entered Ready\\\\x1b]0;pwned\\\\x07'
        >>> printable("naïve café ✓\\tdone")
        'naïve café ✓\\tdone'
    """

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char == "\n":
            return char if newlines else "\\n"
        if char == "\r":
            return "\\r"
        return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"

    return _UNSAFE.sub(escape, text)


def print_json(doc: Any) -> None:
    """``doc`` as canonical JSON on stdout (sorted keys, 2-space indent, one final newline),
    with the characters a terminal would act on (C1 controls, bidi overrides) escaped."""
    text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", dumps(doc))
    typer.echo(text, nl=False)


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
    return f"{stamp} {printable(event.kind):<9} {printable(event.message)}"


def show_status(doc: dict[str, Any], as_json: bool) -> None:
    """Print a run's document, without its events (as ``status`` does)."""
    if as_json:
        print_json(doc)
        return
    url = printable(doc.get("url") or "")
    typer.echo(f"{doc['id']}  {doc['deployment']}  {doc['state']}  {url}")
    if doc["abort"]:
        typer.echo(f"abort: {printable(doc['abort'])}")
    for key, value in doc["params"].items():
        if key.endswith(":statecustom"):
            typer.echo(f"  {key.split(':')[0]}: {printable(value)}")
        elif key.endswith(":image.built"):
            typer.echo(f"  {key.split(':')[0]}: booted from built image {printable(value)}")


def show_runs(runs: list[dict[str, Any]], as_json: bool) -> None:
    """Print runs (id, deployment, state, user, created_at), one a line or as JSON."""
    if as_json:
        print_json(runs)
        return
    for r in runs:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"]))
        typer.echo(f"{r['id']}  {stamp}  {r['deployment']:<16} {r['state']}")


def show_params(values: dict[str, str], as_json: bool) -> None:
    """Print a run's parameters, ``key = value`` a line or as JSON."""
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        typer.echo(f"{key} = {printable(value)}")


def show_event(event: Event, as_json: bool) -> None:
    """One event on stdout: a terminal line, or a JSON document per line."""
    typer.echo(json.dumps(event.to_json(), sort_keys=True) if as_json else event_line(event))


def report(doc: dict[str, Any], state: str, as_json: bool) -> NoReturn:
    """Print where a driven run ended (its whole document with ``--json``); exit 0 only
    for Ready or Done."""
    if as_json:
        print_json(doc)
    else:
        abort = f" — {printable(doc['abort'])}" if doc["abort"] else ""
        typer.echo(f"run {doc['id']}: {state}{abort}")
        if doc.get("url"):
            typer.echo(f"url: {printable(doc['url'])}")
    raise typer.Exit(0 if state in ("Ready", "Done") else 1)


def destroyed_report(run_id: str, state: str, destroyed: bool, as_json: bool) -> NoReturn:
    """Print how a destroy ended; exit 0 only when every resource is gone."""
    if as_json:
        print_json({"id": run_id, "state": state, "destroyed": destroyed})
    else:
        typer.echo(f"run {run_id}: {state}" + ("" if destroyed else " (destroy failed: see logs)"))
    raise typer.Exit(0 if destroyed else 1)
