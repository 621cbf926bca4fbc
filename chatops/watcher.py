"""The run watcher: every run that asked to be told about in Slack gets one parent message
and its life as thread replies, posted off the run's path.

A run asks through its ``origin`` (:func:`slack_target`): ``{"slack": {"team", "channel",
"thread_ts", "user"}}`` for runs started from Slack (``thread_ts`` is the parent message
posted when the command came; absent, the watcher posts one), or ``{"notify": {"slack":
{"channel"}}}`` for runs started elsewhere (the GitOps front door sets it to the channel a
repository names). One thread per run: state changes, one line per instance that is late
(still not voted after half the run's timeout) or failed, the abort message, the plan and
Approve/Cancel buttons of a held run, and at Ready the service and instance links; the
parent is updated in place with the current state.

The watcher only reads the store (events, runs, parameters) and remembers how far it got
in ``chatops/threads.json`` in the service home, so a restart neither repeats nor loses a
line. When Slack is rate limited it waits the ``Retry-After`` it is told; when Slack is
down it retries every few seconds; runs go on meanwhile, and the thread catches up after.

Example (not run: it needs a service and Slack)::

        watcher = RunWatcher(service, SlackClient(token, url, patient=False), home)
        watcher.start()
        ...
        watcher.stop()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chatops import blocks
from chatops.slack import SlackClient, SlackRefused, SlackUnavailable
from engine.access import Actor
from engine.errors import NotFound
from engine.files import write_atomic
from engine.service import ON_THE_WAY, OVER, Service
from engine.store.runstore import RunFilter, RunRecord

log = logging.getLogger(__name__)
#: The watcher reads every run that asked to be reported; it acts for no person and
#: changes nothing, so it holds every right to read.
WATCHER = Actor("slack-watcher", admin=True)
INTERVAL_S = 0.5
#: An instance that has not voted after this share of the run's timeout is late.
LATE_SHARE = 0.5
#: How many of the newest runs each look for new ones covers.
DISCOVERY_WINDOW = 50
REST_S = 5.0


def slack_target(origin: str | dict[str, Any]) -> tuple[str, str | None, str | None] | None:
    """(channel, parent ts, Slack user who asked) of a run's origin, None when it asks
    for no Slack thread.

    >>> slack_target('{"slack": {"team": "T1", "channel": "C1", "thread_ts": "1.2", "user": "U1"}}')
    ('C1', '1.2', 'U1')
    >>> slack_target({"notify": {"slack": {"channel": "C9"}}}), slack_target("{}")
    (('C9', None, None), None)
    """
    try:
        doc = json.loads(origin) if isinstance(origin, str) else origin
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    slack = doc.get("slack")
    if isinstance(slack, dict) and isinstance(slack.get("channel"), str):
        ts, user = slack.get("thread_ts"), slack.get("user")
        return (
            slack["channel"],
            ts if isinstance(ts, str) else None,
            user if isinstance(user, str) else None,
        )
    notify = doc.get("notify")
    target = notify.get("slack") if isinstance(notify, dict) else None
    if isinstance(target, dict) and isinstance(target.get("channel"), str):
        return target["channel"], None, None
    return None


@dataclass
class Thread:
    """How far a run's Slack thread has got."""

    run: str
    channel: str
    ts: str | None = None
    slack_user: str | None = None
    after: int = 0  # the last event told
    shown: str = ""  # what the parent shows: state|approval|abort
    late: list[str] = field(default_factory=list)  # states whose late instances were told
    approval_ts: str | None = None
    approval_shown: str = ""
    links: bool = False
    closed: bool = False


class RunWatcher:
    """Posts the life of runs to Slack from its own thread (see the module docstring)."""

    def __init__(
        self,
        service: Service,
        slack: SlackClient,
        home: Path,
        *,
        interval_s: float = INTERVAL_S,
        late_share: float = LATE_SHARE,
    ) -> None:
        self.service = service
        self.slack = slack
        self.path = home / "chatops" / "threads.json"
        self.interval_s = interval_s
        self.late_share = late_share
        self.threads: dict[str, Thread] = {}
        self.mark = time.time()  # runs created before this were seen (or predate us)
        self.paused_until = 0.0
        self._saved = ""
        # Runs at rest (Ready, or over with resources kept) are looked at every REST_S only.
        self._resting: dict[str, float] = {}
        self._load()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slack-watcher", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start watching, in a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current look (what was posted is remembered)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def wake(self) -> None:
        """Look now rather than at the next tick (a command just started or moved a run)."""
        self._resting.clear()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            pause = self.paused_until - time.time()
            if pause > 0:
                self._stop.wait(pause)
                continue
            try:
                self.tick()
            except SlackUnavailable as err:
                log.warning("Slack unavailable (%s): trying again in %.0fs", err, err.retry_after)
                self.paused_until = time.time() + err.retry_after
            except Exception:  # a bad run must not stop the others' threads
                log.exception("slack watcher tick failed")
                self._stop.wait(2.0)
            self._wake.wait(self.interval_s)
            self._wake.clear()

    # -- one pass ----------------------------------------------------------------------

    def tick(self) -> None:
        """Find new runs to tell about, then bring every open thread up to date."""
        self._discover()
        now = time.time()
        for thread in [t for t in self.threads.values() if not t.closed]:
            if self._resting.get(thread.run, 0.0) > now:
                continue
            try:
                self._follow(thread)
            except SlackRefused as err:
                # Slack will never take this thread (no such channel, not invited): stop.
                log.warning("run %s: Slack refused its thread (%s): no more posts", thread.run, err)
                thread.closed = True
            except NotFound:
                thread.closed = True
            finally:
                self._save()

    def _discover(self) -> None:
        newest = self.mark
        for run in self.service.list_runs(WATCHER, RunFilter(limit=DISCOVERY_WINDOW)):
            if run.created_at < self.mark - 60:
                break
            newest = max(newest, run.created_at)
            if run.id in self.threads:
                continue
            target = slack_target(run.origin)
            if target is not None and run.created_at >= self.mark - 60:
                channel, ts, user = target
                self.threads[run.id] = Thread(run.id, channel, ts, user)
        if newest != self.mark:
            self.mark = newest
            self._save()

    def _follow(self, thread: Thread) -> None:
        run = self.service.run_for(WATCHER, thread.run)
        if thread.ts is None:
            thread.ts = self.slack.post(thread.channel, blocks.parent(self._view(run, thread)))
            thread.shown = _shown(run)
            self._save()
        events = self.service.events(WATCHER, run.id, thread.after, 500)
        lines = [line for e in events if (line := blocks.event_line(e)) is not None]
        late = self._late(run, thread)
        if lines or late:
            self.slack.post(thread.channel, blocks.progress(lines + late), thread.ts)
        if late:
            thread.late.append(run.state)
        if events:
            thread.after = events[-1].id
        self._approval(run, thread)
        if run.state == "Ready" and not thread.links:
            message = blocks.links(self.service.params(WATCHER, run.id))
            if message is not None:
                self.slack.post(thread.channel, message, thread.ts)
            thread.links = True
        if _shown(run) != thread.shown:
            self.slack.update(thread.channel, thread.ts, blocks.parent(self._view(run, thread)))
            thread.shown = _shown(run)
        if (
            run.state in OVER
            and run.checkpoint in ("destroyed", "destroy-failed")
            and len(events) < 500
        ):
            thread.closed = True
        elif run.state not in ON_THE_WAY and not events:
            self._resting[run.id] = time.time() + REST_S

    def _late(self, run: RunRecord, thread: Thread) -> list[str]:
        if run.state not in ON_THE_WAY or run.state in thread.late or run.abort_message:
            return []
        if run.approval in ("pending", "rejected") or run.state == "Initializing":
            return []
        if time.time() - run.state_since < run.timeout_s * self.late_share:
            return []
        waiting = self.service.waiting(WATCHER, run.id)
        return [blocks.late_line(name, run.state, waits) for name, waits in waiting.items()]

    def _approval(self, run: RunRecord, thread: Thread) -> None:
        """Post the Approve/Cancel message once the held run is planned; show the decision."""
        if thread.approval_ts is None:
            if (
                run.approval == "pending"
                and run.checkpoint == "planned"
                and run.abort_message is None
            ):
                message = blocks.approval_request(self._view(run, thread), self.plan(run.id))
                thread.approval_ts = self.slack.post(thread.channel, message, thread.ts)
                thread.approval_shown = "pending"
            return
        if run.approval != thread.approval_shown and run.approval in ("approved", "rejected"):
            who = next(
                (
                    e.message
                    for e in reversed(self.service.events(WATCHER, run.id, 0, 100_000))
                    if e.kind == "approval" and e.message.startswith(run.approval)
                ),
                run.approval,
            )
            icon = ":white_check_mark:" if run.approval == "approved" else ":no_entry_sign:"
            message = blocks.approval_decided(
                self._view(run, thread), self.plan(run.id), f"{icon} {who}"
            )
            self.slack.update(thread.channel, thread.approval_ts, message)
            thread.approval_shown = run.approval

    def plan(self, run_id: str) -> list[str]:
        """The plan lines of a held run (one per cloud)."""
        return [
            e.message for e in self.service.events(WATCHER, run_id, 0, 100_000) if e.kind == "plan"
        ]

    def _view(self, run: RunRecord, thread: Thread) -> blocks.RunView:
        url = (
            self.service.params(WATCHER, run.id).get("ss:url.service")
            if run.state == "Ready"
            else None
        )
        return blocks.RunView(
            run.id,
            run.deployment,
            run.user,
            run.state,
            run.abort_message,
            run.approval,
            url,
            thread.slack_user,
        )

    # -- what the watcher remembers ----------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            self.mark = float(doc.get("mark", self.mark))
            for raw in doc.get("threads", []):
                thread = Thread(**raw)
                self.threads[thread.run] = thread
        except (ValueError, TypeError) as err:
            log.error("%s is unreadable (%s): starting afresh", self.path, err)

    def _save(self) -> None:
        # Closed threads are kept a while so discovery does not take their runs again.
        keep = [t for t in self.threads.values() if not t.closed][-1000:]
        keep += [t for t in self.threads.values() if t.closed][-200:]
        text = json.dumps({"mark": self.mark, "threads": [asdict(t) for t in keep]}, sort_keys=True)
        if text != self._saved:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(self.path, text + "\n", mode=0o600)
            self._saved = text


def _shown(run: RunRecord) -> str:
    return f"{run.state}|{run.approval}|{run.abort_message or ''}"
