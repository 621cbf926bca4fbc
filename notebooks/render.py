"""HTML for what the panels show: a plan, a run's instances, parameters, events and links,
the run table. Pure functions of the documents; every text is escaped.

Example:
    >>> instances({"web.1:hostname": "10.0.0.5", "web.1:statecustom": "up", "ss:state": "Ready"})
    [{'name': 'web.1', 'cloud': '', 'address': '10.0.0.5', 'status': 'up'}]
    >>> "<b>" in message("<b>", error=True)
    False
"""

from __future__ import annotations

import base64
import datetime
import html
import re
from typing import Any

INSTANCE_KEY = re.compile(r"^([A-Za-z0-9_-]+\.\d+):([A-Za-z0-9_.-]+)$")
STATE_COLOUR = {"Ready": "#2e7d32", "Done": "#455a64", "Aborted": "#c62828", "Cancelled": "#c62828"}
#: Report archives bigger than this are named, not embedded in the page.
EMBED_LIMIT = 5 * 1024 * 1024
e = html.escape


def message(text: str, error: bool = False) -> str:
    """A message line: red for an error (every line of a multi-line reason kept)."""
    if not text:
        return ""
    colour = "#c62828" if error else "#1b5e20"
    kind = "ss-error" if error else "ss-info"
    body = "<br>".join(e(line) for line in text.splitlines())
    return f'<div class="{kind}" style="color:{colour};white-space:pre-wrap">{body}</div>'


def text_of(markup: str) -> str:
    r"""The text of a message's HTML, lines kept.

    >>> text_of(message("a < b\nc", error=True))
    'a < b\nc'
    """
    return html.unescape(re.sub(r"<[^>]+>", "", markup.replace("<br>", "\n")))


def instances(params: dict[str, str]) -> list[dict[str, str]]:
    """One row per instance: cloud, address (hostname), status line (``statecustom``)."""
    rows: dict[str, dict[str, str]] = {}
    for key, value in params.items():
        found = INSTANCE_KEY.match(key)
        if not found:
            continue
        name, param = found.groups()
        row = rows.setdefault(name, {"name": name, "cloud": "", "address": "", "status": ""})
        if param == "cloud":
            row["cloud"] = value
        elif param == "hostname":
            row["address"] = value
        elif param == "statecustom":
            row["status"] = value
    return [
        rows[n]
        for n in sorted(rows, key=lambda n: (n.rpartition(".")[0], int(n.rpartition(".")[2])))
    ]


def table(headers: list[str], rows: list[list[str]], css: str = "") -> str:
    """An HTML table of already-escaped cells."""
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{h}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def state_badge(state: str) -> str:
    colour = STATE_COLOUR.get(state.split(" ")[0], "#1565c0")
    return f'<b class="ss-state" style="color:{colour}">{e(state)}</b>'


def run_view(doc: dict[str, Any], run_state: str, states: dict[str, str] | None = None) -> str:
    """A run's state, abort (red), instances (``states``: each one's, else the run's),
    parameters and, at Ready, its links."""
    parts = [f"<div>run <code>{e(doc['id'])}</code> of <b>{e(doc.get('deployment', ''))}</b>: "]
    parts.append(state_badge(run_state) + "</div>")
    if doc.get("abort"):
        parts.append(
            '<div class="ss-abort" style="color:#c62828;font-weight:bold">'
            f"aborted: {e(str(doc['abort']))}</div>"
        )
    params = doc.get("params") or {}
    rows = [
        [
            e(i["name"]),
            state_badge((states or {}).get(i["name"], run_state)),
            e(i["status"]),
            e(i["address"]),
            e(i["cloud"]),
        ]
        for i in instances(params)
    ]
    parts.append(table(["instance", "state", "status", "address", "cloud"], rows, "ss-instances"))
    links = run_links(doc)
    if run_state == "Ready" and links:
        items = "".join(
            f'<li><a href="{e(url)}" target="_blank">{e(name)}: {e(url)}</a></li>'
            for name, url in links
        )
        parts.append(f'<div class="ss-links">links:<ul>{items}</ul></div>')
    shown = [[e(k), e(str(v))] for k, v in sorted(params.items())]
    parts.append(
        "<details><summary>parameters</summary>"
        + table(["parameter", "value"], shown, "ss-params")
        + "</details>"
    )
    return "".join(parts)


def run_links(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's URLs: the service URL and every ``url``-like parameter with http(s)."""
    found = []
    if doc.get("url"):
        found.append(("service", str(doc["url"])))
    for key, value in sorted((doc.get("params") or {}).items()):
        is_url = str(value).startswith(("http://", "https://"))
        if "url" in key.rpartition(":")[2] and is_url and ("service", value) not in found:
            found.append((key, str(value)))
    return found


def events(docs: list[dict[str, Any]], last: int = 30) -> str:
    """The last ``last`` events, newest at the bottom."""
    rows = [
        [e(clock(float(ev["at"]))), e(str(ev["kind"])), e(str(ev["message"]))]
        for ev in docs[-last:]
    ]
    return table(["at", "kind", "message"], rows, "ss-events")


def clock(at: float) -> str:
    """UTC wall-clock time of an event.

    >>> clock(0.0)
    '1970-01-01 00:00:00'
    """
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def plan(doc: dict[str, Any]) -> str:
    """A plan's per-cloud summary: what a deploy would add, change and destroy."""
    rows = []
    for cloud, body in sorted((doc.get("clouds") or {}).items()):
        nodes = ", ".join(sorted(body.get("nodes") or {}))
        rows.append(
            [
                e(cloud),
                str(body.get("add", 0)),
                str(body.get("change", 0)),
                str(body.get("destroy", 0)),
                e(nodes),
            ]
        )
    head = f"<div>plan of <b>{e(str(doc.get('deployment', '')))}</b>:</div>"
    return head + table(["cloud", "add", "change", "destroy", "nodes"], rows, "ss-plan")


def runs(docs: list[dict[str, Any]]) -> str:
    """The run table of the explorer (newest first, as listed)."""
    rows = [
        [
            f"<code>{e(d['id'])}</code>",
            e(d["deployment"]),
            state_badge(d["state"]),
            e(d["user"]),
            e(", ".join(d.get("clouds") or [])),
            e(clock(float(d["created_at"]))),
        ]
        for d in docs
    ]
    if not rows:
        return '<p class="ss-runs-empty">no runs match</p>'
    return table(["run", "recipe", "state", "user", "clouds", "created (UTC)"], rows, "ss-runs")


def reports(found: list[tuple[str, bytes | None]]) -> str:
    """Report archives as download links (embedded in the page), or their names."""
    if not found:
        return "<div class='ss-reports'>no report archives</div>"
    items = []
    for name, data in found:
        if data is not None and len(data) <= EMBED_LIMIT:
            href = "data:application/gzip;base64," + base64.b64encode(data).decode("ascii")
            items.append(f'<li><a download="{e(name)}" href="{href}">{e(name)}</a></li>')
        else:
            items.append(f"<li>{e(name)} (on the service, under runs/…/reports)</li>")
    return f"<div class='ss-reports'>reports:<ul>{''.join(items)}</ul></div>"
