"""Where a run's time went, per instance, computed from its events; drawn as inline SVG.

Each run state (``state`` events) is a span of time. In Provisioning, Executing and
SendingReports an instance is *busy* until its own work is done (its resource created, its
``deployment`` script finished, its report uploaded), then *waiting* for the others.

Example:
    >>> events = [
    ...     {"at": 0.0, "kind": "state", "message": "", "data": {"state": "Provisioning"}},
    ...     {"at": 1.0, "kind": "state", "message": "", "data": {"state": "Executing"}},
    ...     {"at": 1.5, "kind": "agent", "message": "a.1: script `deployment` finished",
    ...      "data": {"instance": "a.1"}},
    ...     {"at": 3.0, "kind": "state", "message": "", "data": {"state": "Ready"}},
    ... ]
    >>> [(s.state, s.start, s.end, s.waiting) for s in timeline(events, now=4.0)["a.1"]]
    [('Provisioning', 0.0, 1.0, False), ('Executing', 1.0, 1.5, False), \
('Executing', 1.5, 3.0, True), ('Ready', 3.0, 4.0, False)]
    >>> "<svg" in render_svg(timeline(events, now=4.0))
    True
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Run states an instance works through, and the event message that says it is done.
WORK_DONE = {
    "Provisioning": re.compile(r"Creation complete"),
    "Executing": re.compile(r"script `deployment` finished"),
    "SendingReports": re.compile(r"report uploaded"),
}
FINAL = ("Done", "Aborted", "Cancelled")
COLOURS = {
    "Initializing": "#9e9e9e",
    "Provisioning": "#1e88e5",
    "Executing": "#fb8c00",
    "SendingReports": "#8e24aa",
    "Ready": "#43a047",
    "Finalizing": "#6d4c41",
    "Done": "#607d8b",
    "Aborted": "#e53935",
    "Cancelled": "#e53935",
}
RESOURCE = re.compile(r"\.([A-Za-z0-9_-]+)\[\"(\d+)\"\]")


@dataclass(frozen=True)
class Segment:
    """An instance in a run state from ``start`` to ``end`` (seconds since the epoch);
    ``waiting``: its own work there was done, it waited for the others."""

    state: str
    start: float
    end: float
    waiting: bool = False


def instance_of(event: dict[str, Any]) -> str | None:
    """The instance an event is about: ``data.instance``, or a Terraform resource's key.

    >>> instance_of({"data": {"resource": 'terraform_data.web["2"]'}})
    'web.2'
    """
    data = event.get("data") or {}
    if data.get("instance"):
        return str(data["instance"])
    found = RESOURCE.search(str(data.get("resource") or ""))
    return f"{found.group(1)}.{found.group(2)}" if found else None


def spans(events: Iterable[dict[str, Any]], now: float) -> list[tuple[str, float, float]]:
    """(state, start, end) of the run's states in order; a state still on ends at ``now``,
    a final state is an instant."""
    starts = [
        (str(e["data"]["state"]), float(e["at"]))
        for e in events
        if e.get("kind") == "state" and (e.get("data") or {}).get("state")
    ]
    found = []
    for i, (state, start) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else (start if state in FINAL else now)
        found.append((state, start, max(start, end)))
    return found


def timeline(
    events: list[dict[str, Any]], instances: Iterable[str] = (), now: float | None = None
) -> dict[str, list[Segment]]:
    """Instance → its segments, for every instance named in the events or in ``instances``."""
    now = time.time() if now is None else now
    names = set(instances)
    done: dict[tuple[str, str], float] = {}
    run_spans = spans(events, now)
    for event in events:
        name = instance_of(event)
        if name is None:
            continue
        names.add(name)
        for state, pattern in WORK_DONE.items():
            if pattern.search(str(event.get("message", ""))):
                done[(name, state)] = float(event["at"])
    rows: dict[str, list[Segment]] = {}
    for name in sorted(names, key=_instance_key):
        row = []
        for state, start, end in run_spans:
            finished = done.get((name, state))
            if state in WORK_DONE and finished is not None and start <= finished < end:
                row.append(Segment(state, start, finished))
                row.append(Segment(state, finished, end, waiting=True))
            else:
                row.append(Segment(state, start, end))
        rows[name] = row
    return rows


def _instance_key(name: str) -> tuple[str, int]:
    node, _, index = name.rpartition(".")
    return (node, int(index)) if index.isdigit() else (name, 0)


#: Width of the marker for a run at rest (Ready): its time is left out of the scale.
REST_W = 6.0
AT_REST = ("Ready",)


def _work_clock(rows: dict[str, list[Segment]]) -> tuple[float, float, list[tuple[float, float]]]:
    """(first start, seconds of work, the at-rest spans left out of the scale)."""
    segments = [s for row in rows.values() for s in row]
    start = min(s.start for s in segments)
    end = max(s.end for s in segments)
    rests = sorted({(s.start, s.end) for s in segments if s.state in AT_REST})
    return start, (end - start) - sum(b - a for a, b in rests), rests


def render_svg(rows: dict[str, list[Segment]], width: int = 720) -> str:
    """An SVG chart: a bar per instance, coloured by state, pale where it waited; each
    piece's tooltip says its state and duration. Time at rest (Ready) is a thin marker, so
    the scale shows where the work went however long a run has been up."""
    if not rows or not any(rows.values()):
        return '<p class="ss-timeline-empty">no timeline yet: the run has not started</p>'
    start, work, rests = _work_clock(rows)
    label_w, bar_h, gap, top = 110, 16, 6, 22
    plot_w = width - label_w - 40 - REST_W * len(rests)
    scale = plot_w / max(work, 1e-6)

    def x_of(at: float) -> float:
        left_out = sum(min(b, at) - a for a, b in rests if a < at)
        markers = sum(1 for a, _ in rests if a < at)
        return label_w + (at - start - left_out) * scale + REST_W * markers

    height = top + len(rows) * (bar_h + gap) + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ss-timeline" width="{width}" '
        f'height="{height}" font-family="sans-serif" font-size="11">'
    ]
    for y, (name, row) in enumerate(rows.items()):
        ypos = top + y * (bar_h + gap)
        parts.append(f'<text x="0" y="{ypos + 12}">{html.escape(name)}</text>')
        for seg in row:
            x = x_of(seg.start)
            w = REST_W if seg.state in AT_REST else max((seg.end - seg.start) * scale, 1.0)
            colour = COLOURS.get(seg.state, "#bdbdbd")
            opacity = "0.35" if seg.waiting else "1"
            what = f"{seg.state}{' (waiting for others)' if seg.waiting else ''}"
            tip = f"{name}: {what}, {seg.end - seg.start:.1f} s"
            parts.append(
                f'<rect x="{x:.1f}" y="{ypos}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{colour}" fill-opacity="{opacity}" data-state="{html.escape(seg.state)}">'
                f"<title>{html.escape(tip)}</title></rect>"
            )
    axis_y = top + len(rows) * (bar_h + gap) + 14
    for i in range(5):
        x = label_w + i / 4 * plot_w
        anchor = "end" if i == 4 else "start"
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y}" text-anchor="{anchor}">{work * i / 4:.1f} s</text>'
        )
    legend_x = label_w
    for state in ("Provisioning", "Executing", "SendingReports", "Ready"):
        parts.append(
            f'<rect x="{legend_x}" y="4" width="10" height="10" fill="{COLOURS[state]}"/>'
            f'<text x="{legend_x + 14}" y="13">{state}</text>'
        )
        legend_x += 110
    parts.append("</svg>")
    return "".join(parts)
