"""Live progress of a run on a terminal: one row per instance, its last vote and status line.

Rendering only: it reads the store and draws a Rich table; the run is driven elsewhere.

Example:
    >>> from engine.store.runstore import RunStore, NewRun, NewInstance
    >>> store = RunStore.open("sqlite://")
    >>> store.create_run(NewRun("r", "d", "u", "always", 9, "{}"),
    ...                  [NewInstance("web.1", "web", 1, "local", "h")], {})
    >>> store.vote("r", "web.1", "Provisioning")
    >>> [row[0:3] for row in instance_rows(store, "r")]
    [('web.1', 'local', 'Provisioning')]
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from engine.cli.output import printable
from engine.coordination.coordinator import STATES
from engine.store.runstore import RunStore


def instance_rows(store: RunStore, run_id: str) -> list[tuple[str, str, str, str, str]]:
    """(instance, cloud, last state voted, hostname, status line) for every instance."""
    params = store.params(run_id)
    by_state = store.votes_by_state(run_id)
    voted: dict[str, str] = {}
    for state in STATES:  # in order, so each instance ends on its latest state
        for name in by_state.get(state, ()):
            voted[name] = state
    return [
        (
            inst["name"],
            inst["cloud"],
            voted.get(inst["name"], "-"),
            params.get(f"{inst['name']}:hostname", ""),
            params.get(f"{inst['name']}:statecustom", ""),
        )
        for inst in store.instances(run_id)
    ]


def render(store: RunStore, run_id: str) -> Table:
    run = store.get_run(run_id)
    state = run.state if run else "?"
    title = f"run {run_id} · {run.deployment if run else ''} · {state}"
    if run and run.abort_message:
        title += f" · aborted: {printable(run.abort_message)}"
    # Rich markup in what agents sent is shown as written, never interpreted.
    table = Table(title=escape(title), expand=False)
    for column in ("instance", "cloud", "voted", "address", "status"):
        table.add_column(column)
    for row in instance_rows(store, run_id):
        table.add_row(*(escape(printable(cell)) for cell in row))
    return table


class LiveProgress(threading.Thread):
    """Redraws the table on stderr twice a second until :meth:`finish`."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        super().__init__(daemon=True)
        self.store, self.run_id = store, run_id
        self.done = threading.Event()
        self.console = Console(stderr=True)

    def run(self) -> None:
        with Live(
            render(self.store, self.run_id), console=self.console, refresh_per_second=4
        ) as live:
            while not self.done.wait(0.5):
                live.update(render(self.store, self.run_id))
            live.update(render(self.store, self.run_id))

    def finish(self) -> None:
        self.done.set()
        self.join(timeout=5)
