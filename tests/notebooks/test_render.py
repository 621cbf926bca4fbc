"""What the panels draw, from documents: an abort in red, links at Ready only, secrets
never in the page (the service masks them; the page escapes everything), and the timeline
computed from a real run's kind of events."""

from __future__ import annotations

from notebooks import render
from notebooks.timeline import Segment, render_svg, spans, timeline

RUN = {
    "id": "r1",
    "deployment": "webapp",
    "state": "Aborted",
    "abort": "db.1: script `deployment` failed <exit 3>",
    "url": "http://127.0.0.1:8080/",
    "params": {
        "db.1:hostname": "127.0.0.1",
        "db.1:cloud": "local",
        "db.1:statecustom": "<b>migrating</b>",
        "db.1:password": "***",
        "lb.1:url": "http://127.0.0.1:8080/",
    },
}


def test_an_abort_is_red_and_escaped() -> None:
    page = render.run_view(RUN, "Aborted")
    assert '<div class="ss-abort" style="color:#c62828;font-weight:bold">' in page
    assert "aborted: db.1: script `deployment` failed &lt;exit 3&gt;" in page
    assert "<b>migrating</b>" not in page and "&lt;b&gt;migrating&lt;/b&gt;" in page
    assert "ss-links" not in page  # links only at Ready


def test_links_at_ready() -> None:
    page = render.run_view({**RUN, "abort": None}, "Ready")
    assert (
        '<a href="http://127.0.0.1:8080/" target="_blank">service: http://127.0.0.1:8080/' in page
    )
    assert render.run_links(RUN) == [("service", "http://127.0.0.1:8080/")]


def test_instance_rows_carry_their_own_state() -> None:
    page = render.run_view(RUN, "Executing", {"db.1": "Executing (done, waiting)"})
    assert "Executing (done, waiting)" in page
    assert render.instances(RUN["params"]) == [  # type: ignore[arg-type]
        {"name": "db.1", "cloud": "local", "address": "127.0.0.1", "status": "<b>migrating</b>"},
        {"name": "lb.1", "cloud": "", "address": "", "status": ""},
    ]


def test_reports_are_links_or_names() -> None:
    page = render.reports([("db.1.tar.gz", b"\x1f\x8b"), ("web.1.tar.gz", None)])
    assert '<a download="db.1.tar.gz" href="data:application/gzip;base64,H4s=">' in page
    assert "web.1.tar.gz (on the service" in page


def event(at: float, kind: str, message: str = "", **data: object) -> dict[str, object]:
    return {"at": at, "kind": kind, "message": message, "data": data}


EVENTS = [
    event(100.0, "state", state="Provisioning"),
    event(
        101.0,
        "terraform",
        'local: terraform_data.db["1"]: Creation complete',
        resource='terraform_data.db["1"]',
    ),
    event(
        102.0,
        "terraform",
        'local: terraform_data.web["1"]: Creation complete',
        resource='terraform_data.web["1"]',
    ),
    event(102.5, "state", state="Executing"),
    event(103.0, "agent", "db.1: script `deployment` finished (exit 0)", instance="db.1"),
    event(106.0, "agent", "web.1: script `deployment` finished (exit 0)", instance="web.1"),
    event(106.0, "state", state="SendingReports"),
    event(106.5, "report", "db.1: report uploaded", instance="db.1"),
    event(107.0, "report", "web.1: report uploaded", instance="web.1"),
    event(107.0, "state", state="Ready"),
    event(500.0, "state", state="Finalizing"),
    event(502.0, "state", state="Done"),
]


def test_the_timeline_says_where_the_time_went() -> None:
    rows = timeline(EVENTS, now=600.0)
    assert list(rows) == ["db.1", "web.1"]
    assert rows["db.1"][:4] == [
        Segment("Provisioning", 100.0, 101.0),
        Segment("Provisioning", 101.0, 102.5, waiting=True),
        Segment("Executing", 102.5, 103.0),
        Segment("Executing", 103.0, 106.0, waiting=True),
    ]
    assert rows["web.1"][2] == Segment("Executing", 102.5, 106.0)
    assert spans(EVENTS, 600.0)[-3:] == [
        ("Ready", 107.0, 500.0),
        ("Finalizing", 500.0, 502.0),
        ("Done", 502.0, 502.0),
    ]


def test_time_at_ready_is_left_out_of_the_scale() -> None:
    svg = render_svg(timeline(EVENTS, now=600.0))
    assert svg.count('data-state="Ready"') == 2
    assert ">9.0 s</text>" in svg  # 7 s of deploying and 2 of finalizing; 393 s at rest not
    assert "web.1: Executing, 3.5 s" in svg
    assert "db.1: Executing (waiting for others), 3.0 s" in svg


def test_no_timeline_before_the_run_starts() -> None:
    assert "no timeline yet" in render_svg(timeline([], ["db.1"], now=1.0))
