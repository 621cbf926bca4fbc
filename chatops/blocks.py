"""Rendering for Slack: results, runs and their progress as Block Kit messages and views.

Pure functions from data to :class:`Message` (or a view document), named by what they
show; nothing here calls Slack or the service. Every message carries a plain ``text``
too (notifications and screen readers use it). User text is escaped for mrkdwn, so a run's
message can never mention ``@channel`` or forge a link.

Example:
    >>> message = render(NotYet("scaling"))
    >>> message.text
    ':construction: scaling is not available yet: redeploy with `xN NODE` for now'
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chatops.commands import (
    Acted,
    HelpText,
    NotYet,
    Refused,
    Result,
    RunList,
    RunLogs,
    RunParams,
    RunStatus,
)
from chatops.grammar import USAGE, ParseError
from engine.store.runstore import Event

SECTION_MAX = 3000
MAX_BLOCKS = 50
APPROVE = "slipstream_approve"
CANCEL = "slipstream_cancel"
DECIDE = "slipstream_decide"
STATE_ICONS = {
    "Initializing": ":hourglass_flowing_sand:",
    "Provisioning": ":building_construction:",
    "Executing": ":gear:",
    "SendingReports": ":outbox_tray:",
    "Ready": ":white_check_mark:",
    "Finalizing": ":broom:",
    "Done": ":checkered_flag:",
    "Aborted": ":x:",
    "Cancelled": ":no_entry_sign:",
}
HELP = {
    "deploy": "start a run of a deployment: `on CLOUD` places every node, `NODE=CLOUD` one "
    "node, `INPUT=VALUE` sets an input (quote values with spaces), `xN NODE` sets a node's "
    "number of instances. Progress goes to a thread under one message per run.",
    "plan": "like `deploy`, but the run is only planned and waits for an approval "
    "(Approve and Cancel buttons in its thread)",
    "status": "a run's state, service link and last events (default: your newest run)",
    "list": "the newest runs you may see (`mine`: only yours)",
    "params": "a run's runtime parameters (sensitive values masked)",
    "logs": "a run's last events",
    "scale": "add or remove instances of one node of a scalable run in Ready",
    "destroy": "stop a run: Ready → Finalizing → Done, or cancel a run on its way",
    "approve": "let a run held for an approval go on (needs the `approve` right)",
    "help": "this list, or one command's",
}


@dataclass(frozen=True)
class Message:
    """What one Slack message says: ``text`` always, ``blocks`` when laid out."""

    text: str
    blocks: tuple[dict[str, Any], ...] = ()

    def payload(self) -> dict[str, Any]:
        """The ``text`` and ``blocks`` fields of ``chat.postMessage`` and its kin."""
        doc: dict[str, Any] = {"text": clip(self.text, 4000)}
        if self.blocks:
            doc["blocks"] = list(self.blocks[:MAX_BLOCKS])
        return doc


@dataclass(frozen=True)
class RunView:
    """What a run's parent message shows."""

    id: str
    deployment: str
    user: str
    state: str
    abort: str | None = None
    approval: str = ""
    url: str | None = None
    slack_user: str | None = None


def escape(text: str) -> str:
    """``text`` safe inside mrkdwn: no mention, link or formatting it did not ask for.

    >>> escape("<!channel> & <http://x|y>")
    '&lt;!channel&gt; &amp; &lt;http://x|y&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int = SECTION_MAX) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut.

    >>> clip("abcdef", 4)
    'abc…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def code(text: str) -> str:
    """Inline code that survives any text (backticks cannot end it early)."""
    return "`" + escape(text).replace("`", "'") + "`"


def link(url: str, label: str | None = None) -> str:
    """A link for http(s) URLs, inline code for anything else."""
    if url.startswith(("http://", "https://")) and not any(c in url for c in "<>| "):
        return f"<{url}|{escape(label or url)}>"
    return code(url)


def section(text: str) -> dict[str, Any]:
    """A mrkdwn section block (text clipped to Slack's 3000 characters)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def context(text: str) -> dict[str, Any]:
    """A context block: small print under a message."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text)}]}


def sections(lines: Sequence[str]) -> tuple[dict[str, Any], ...]:
    """Lines grouped into as few sections as their length allows."""
    blocks: list[dict[str, Any]] = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        line = clip(line, SECTION_MAX - 2)
        if chunk and size + len(line) + 1 > SECTION_MAX:
            blocks.append(section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        blocks.append(section("\n".join(chunk)))
    return tuple(blocks[:MAX_BLOCKS])


def plain(lines: Iterable[str]) -> Message:
    """A message of mrkdwn lines, in as few sections as fit."""
    text = "\n".join(lines)
    return Message(text, sections(text.split("\n")))


# -- a run's parent message and its thread -------------------------------------------


def mention(user: str) -> str:
    """A mention of a Slack member id (anything else is shown as text).

    >>> mention("U0456EFGH"), mention("<!channel>")
    ('<@U0456EFGH>', '&lt;!channel&gt;')
    """
    return f"<@{user}>" if re.fullmatch(r"[UW][A-Z0-9]{1,31}", user) else escape(user)


def starting(recipe: str, slack_user: str) -> Message:
    """The parent message while a run is being created."""
    line = (
        f":hourglass_flowing_sand: *{escape(recipe)}* · starting… (asked by {mention(slack_user)})"
    )
    return Message(f"{recipe}: starting", (section(line),))


def parent(run: RunView) -> Message:
    """A run's parent message, kept up to date in place."""
    icon = STATE_ICONS.get(run.state, ":grey_question:")
    head = f"{icon} *{escape(run.deployment)}* · run {code(run.id)} · *{run.state}*"
    who = f"{mention(run.slack_user)} ({escape(run.user)})" if run.slack_user else escape(run.user)
    lines = [head, f"asked by {who}"]
    if run.approval == "pending" and run.abort is None:
        lines.append(":raised_hand: waiting for an approval (see the thread)")
    if run.abort:
        lines.append(f"> {escape(run.abort)}")
    if run.url and run.state == "Ready":
        lines.append(f":link: {link(run.url)}")
    text = f"{run.deployment} run {run.id}: {run.state}"
    return Message(text, (section("\n".join(lines)), context("progress in the thread")))


def event_line(event: Event) -> str | None:
    """The thread line for one event of a run's log, or None when it is not worth one."""
    message = escape(event.message)
    data = event.data
    if event.kind == "created":
        clouds = ", ".join(str(c) for c in data.get("clouds", []))
        return f":sparkles: {message} ({data.get('instances', '?')} instance(s) on {clouds})"
    if event.kind == "state":
        state = str(data.get("state", ""))
        return f"{STATE_ICONS.get(state, ':arrow_right:')} *{escape(state)}*"
    if event.kind == "abort":
        return f":x: {message}"
    if event.kind == "approval":
        return f":raised_hand: {message}"
    if event.kind == "plan":
        return f":clipboard: plan: {message}"
    if event.kind == "terminate":
        return f":wastebasket: {message}"
    if event.kind == "error" or (event.kind == "agent" and data.get("level") in ("error", "warn")):
        return f":warning: {message}"
    return None


def late_line(instance: str, state: str, waits: Sequence[str]) -> str:
    """One instance holding a run back.

    >>> late_line("web.2", "Executing", ["db.1:url"])
    ':hourglass: `web.2` is late in Executing (waiting for `db.1:url`)'
    """
    why = f"waiting for {', '.join(code(k) for k in waits)}" if waits else "has not voted"
    return f":hourglass: {code(instance)} is late in {state} ({why})"


def progress(lines: Sequence[str]) -> Message:
    """A thread reply telling what happened since the last one."""
    return Message("\n".join(lines), sections(lines))


def links(params: Mapping[str, str]) -> Message | None:
    """The run's service and instance URLs (``ss:url.service``, ``NODE.N:url…``) at Ready."""
    found = [
        (key, value)
        for key, value in params.items()
        if key == "ss:url.service"
        or (key.partition(":")[2] == "url" or key.partition(":")[2].startswith("url."))
    ]
    if not found:
        return None
    found.sort(key=lambda kv: (kv[0] != "ss:url.service", kv[0]))
    lines = [":link: *Ready*, at:"]
    lines += [f"• {code(key)}: {link(value)}" for key, value in found if value]
    return Message("\n".join(f"{k}: {v}" for k, v in found), sections(lines))


# -- approvals -----------------------------------------------------------------------


def approval_request(run: RunView, plan: Sequence[str]) -> Message:
    """The plan of a held run, with Approve and Cancel buttons."""
    lines = [
        f":raised_hand: *Approval needed*: run {code(run.id)} of *{escape(run.deployment)}*,"
        f" asked by {escape(run.user)}",
        *(f"• {escape(line)}" for line in plan or ["(no plan recorded)"]),
    ]
    buttons = {
        "type": "actions",
        "block_id": f"approval:{run.id}",
        "elements": [
            _button("Approve", APPROVE, run.id, "primary"),
            _button("Cancel", CANCEL, run.id, "danger"),
        ],
    }
    return Message(
        f"{run.deployment} run {run.id} waits for an approval", (*sections(lines), buttons)
    )


def approval_decided(run: RunView, plan: Sequence[str], outcome: str) -> Message:
    """The approval message once decided (the buttons give way to who decided)."""
    request = approval_request(run, plan)
    return Message(
        f"{run.deployment} run {run.id}: {outcome}", (*request.blocks[:-1], context(outcome))
    )


def _button(label: str, action_id: str, value: str, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label},
        "style": style,
        "value": value,
    }


def confirm_view(
    run_id: str, deployment: str, decision: str, plan: Sequence[str], metadata: Mapping[str, str]
) -> dict[str, Any]:
    """The confirmation dialog (a modal) before an approval or a cancellation takes effect."""
    approve = decision == "approve"
    question = (
        f"Approve run {code(run_id)} of *{escape(deployment)}*? Terraform applies this plan:"
        if approve
        else f"Cancel run {code(run_id)} of *{escape(deployment)}*? Nothing will be applied."
    )
    lines = [question, *(f"• {escape(line)}" for line in plan)] if approve else [question]
    return {
        "type": "modal",
        "callback_id": DECIDE,
        "private_metadata": json.dumps({**metadata, "run": run_id, "decision": decision}),
        "title": {"type": "plain_text", "text": "Approve run" if approve else "Cancel run"},
        "submit": {"type": "plain_text", "text": "Approve" if approve else "Cancel the run"},
        "close": {"type": "plain_text", "text": "Back"},
        "blocks": list(sections(lines)),
    }


# -- answers to commands -------------------------------------------------------------


def usage_error(err: ParseError) -> Message:
    """The ephemeral answer to text that is not a command."""
    lines = [f":warning: {escape(str(err))}"]
    if err.usage:
        lines.append(f"usage: {code(err.usage)}")
    lines.append("`/slipstream help` lists every command.")
    return plain(lines)


def unknown_user(team: str, user: str) -> Message:
    """The answer to anyone the service cannot map to one of its users."""
    ident = f"{team}:{user}"
    return plain(
        [
            f":wave: I do not know who you are in SlipStream (Slack user {code(ident)}).",
            "Ask an administrator to link you: "
            f"{code(f'slipstream user link NAME --slack {ident}')}, or to give your SlipStream"
            " user the e-mail address of your Slack profile. Until then only"
            " `/slipstream help` works.",
        ]
    )


def render(result: Result) -> Message:
    """The answer to a command, by the kind of its result."""
    match result:
        case Refused(reason, problems):
            return plain([f":no_entry: {escape(reason)}", *(f"• {escape(p)}" for p in problems)])
        case HelpText(topic):
            return help_text(topic)
        case RunStatus(doc):
            return status(doc)
        case RunList(runs, scope):
            if not runs:
                return plain(["no runs" + (" of yours" if scope == "mine" else " you may see")])
            now = time.time()
            lines = [
                f"{STATE_ICONS.get(r.state, '')} {code(r.id)} *{escape(r.deployment)}* "
                f"{r.state} · {escape(r.user)} · {_age(now - r.created_at)} ago"
                for r in runs
            ]
            return plain(lines)
        case RunParams(run_id, params):
            body = "\n".join(f"{k} = {v}" for k, v in params.items()) or "(none)"
            return plain([f"parameters of run {code(run_id)}:", _block(body)])
        case RunLogs(run_id, events):
            body = "\n".join(_log_line(e) for e in events) or "(no events)"
            return plain([f"last events of run {code(run_id)}:", _block(body)])
        case Acted(run_id, action, state):
            verb = {
                "terminate": ":wastebasket: terminating",
                "approve": ":+1: approved",
                "scale": ":arrow_up_down: scaling",
            }
            return plain([f"{verb.get(action, action)} run {code(run_id)}: now *{state}*"])
        case NotYet(what):
            return plain(
                [f":construction: {what} is not available yet: redeploy with `xN NODE` for now"]
            )
    return plain([f"{result}"])


@functools.lru_cache(maxsize=16)
def help_text(topic: str | None) -> Message:
    """Every command's usage and what it does, or one command's."""
    verbs = [topic] if topic in USAGE else list(USAGE)
    lines = ["*/slipstream* commands:"] if topic is None else []
    lines += [f"{code(USAGE[v])} — {HELP[v]}" for v in verbs if v]
    return plain(lines)


def status(doc: Mapping[str, Any]) -> Message:
    """A run's headline and last five events, for ``status``."""
    view = RunView(
        str(doc["id"]),
        str(doc["deployment"]),
        str(doc["user"]),
        str(doc["state"]),
        doc.get("abort"),
        str(doc.get("approval") or ""),
        doc.get("url"),
    )
    events = [Event(**{**e, "run_id": view.id}) for e in doc.get("events", [])[-5:]]
    body = "\n".join(_log_line(e) for e in events)
    return Message(
        parent(view).text, (*parent(view).blocks[:1], section(_block(body or "(no events)")))
    )


def _block(text: str) -> str:
    return "```" + clip(escape(text).replace("```", "'''"), SECTION_MAX - 8) + "```"


def _log_line(event: Event) -> str:
    return f"{time.strftime('%H:%M:%S', time.localtime(event.at))} {event.kind:<9} {event.message}"


def _age(seconds: float) -> str:
    """
    >>> _age(42), _age(3600 * 5), _age(86400 * 3)
    ('42s', '5h', '3d')
    """
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
