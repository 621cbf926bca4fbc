"""A run shown live: its state, abort, instances, links, timeline, parameters and events.

Shared by the deploy panel (the run just started) and the explorer (the run selected).

Example:
    >>> view = RunView()
    >>> view.show({"id": "r1", "deployment": "app", "state": "Ready", "params": {}}, [])
    >>> view.state
    'Ready'
"""

from __future__ import annotations

import time
from typing import Any

import ipywidgets as w

import notebooks.render as render
from notebooks.timeline import Segment, render_svg, timeline


def instance_states(rows: dict[str, list[Segment]]) -> dict[str, str]:
    """Each instance's state now: the run's, and whether it waits for the others there.

    >>> instance_states({"a.1": [Segment("Executing", 0, 1), Segment("Executing", 1, 2, True)]})
    {'a.1': 'Executing (done, waiting)'}
    """
    found = {}
    for name, row in rows.items():
        if row:
            last = row[-1]
            found[name] = f"{last.state} (done, waiting)" if last.waiting else last.state
    return found


class RunView:
    """Widgets for one run, refreshed by :meth:`show` (from any thread)."""

    def __init__(self) -> None:
        self.summary = w.HTML()
        self.chart = w.HTML()
        self.log = w.HTML()
        self.error = w.HTML()
        self.widget = w.VBox([self.summary, self.error, self.chart, self.log])
        self.state = ""
        self.doc: dict[str, Any] = {}

    def show(self, doc: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self.doc = doc
        self.state = str(doc.get("state", ""))
        instances = [row["name"] for row in render.instances(doc.get("params") or {})]
        rows = timeline(events, instances, time.time())
        self.summary.value = render.run_view(doc, self.state, instance_states(rows))
        self.chart.value = "<div><b>timeline</b></div>" + render_svg(rows)
        self.log.value = "<div><b>events</b></div>" + render.events(events)
        self.error.value = ""

    def fail(self, text: str) -> None:
        self.error.value = render.message(text, error=True)

    def clear(self) -> None:
        for part in (self.summary, self.chart, self.log, self.error):
            part.value = ""
        self.state, self.doc = "", {}
