"""What the Slack app does with a slash command, a button press and a dialog's submission,
from Slack's payloads (plain dicts) to calls of :class:`~chatops.commands.ChatCommands` and
the service, and back as rendered messages. Bolt is wired on top in :mod:`chatops.app`.

- A command's *ack* (:meth:`SlackHandlers.ack_command`) parses only: help and usage errors
  are answered at once, everything else is acknowledged empty and done *lazily*
  (:meth:`SlackHandlers.command`), its answer sent to the command's ``response_url``.
- ``deploy`` and ``plan`` post the run's parent message first (its ``ts`` goes in the run's
  origin: the watcher threads under it), then start the run; a refused deploy deletes it.
- Approve and Cancel open a confirmation dialog (``views.open``) for users holding the
  ``approve`` right; anyone else gets an ephemeral refusal naming the missing right. The
  service decides on the dialog's submission and checks the right again.

Example (not run: it needs a service and Slack)::

        handlers = SlackHandlers(commands, identities, slack, service, watcher.wake)
        handlers.ack_command("deplyo webapp")   # a usage message naming `deploy`
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from chatops import blocks
from chatops.blocks import Message
from chatops.commands import ChatCommands, Prepared, Refused
from chatops.grammar import Deploy, Help, ParseError, parse
from chatops.identity import SlackIdentities
from chatops.slack import SlackClient, SlackRefused, SlackUnavailable
from engine.access import Actor
from engine.errors import SlipstreamError
from engine.service import Service

log = logging.getLogger(__name__)
Reply = Callable[[Message], None]
_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|[^>]*)?>")


def slack_text(text: str) -> str:
    """What a person typed, from the text Slack sends: links Slack added are unwrapped
    and its three HTML escapes undone (anything else in ``<…>`` stays, and the grammar
    refuses it).

    >>> slack_text("deploy webapp url=<http://example.org|example.org> a=&lt;b&gt;")
    'deploy webapp url=http://example.org a=<b>'
    """
    text = _LINK.sub(r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class SlackHandlers:
    """Slack's requests, handled (see the module docstring)."""

    def __init__(
        self,
        commands: ChatCommands,
        identities: SlackIdentities,
        slack: SlackClient,
        service: Service,
        moved: Callable[[], None],
    ) -> None:
        self.commands = commands
        self.identities = identities
        self.slack = slack
        self.service = service
        self.moved = moved  # a run was started or moved: the watcher looks now

    # -- /slipstream -------------------------------------------------------------------

    def ack_command(self, text: str) -> Message | None:
        """The immediate answer: help, or the usage error; None when there is work to do."""
        try:
            command = parse(slack_text(text))
        except ParseError as err:
            return blocks.usage_error(err)
        if isinstance(command, Help):
            return blocks.help_text(command.topic)
        return None

    def command(self, body: dict[str, Any], reply: Reply) -> None:
        """The work of a command that was acknowledged empty."""
        try:
            command = parse(slack_text(str(body.get("text", ""))))
        except ParseError:
            return  # answered by the ack
        if isinstance(command, Help):
            return
        team, user = str(body.get("team_id", "")), str(body.get("user_id", ""))
        actor = self._actor(team, user, reply)
        if actor is None:
            return
        if isinstance(command, Deploy):
            self._deploy(actor, command, team, str(body.get("channel_id", "")), user, reply)
            return
        reply(blocks.render(self.commands.run(actor, command)))
        self.moved()

    def _deploy(
        self, actor: Actor, command: Deploy, team: str, channel: str, user: str, reply: Reply
    ) -> None:
        prepared = self.commands.prepare(actor, command)
        if isinstance(prepared, Refused):
            reply(blocks.render(prepared))
            return
        ts = self._post_parent(prepared, channel, user, reply)
        if ts == "":
            return
        origin = {"slack": {"team": team, "channel": channel, "thread_ts": ts, "user": user}}
        started = self.commands.deploy(actor, prepared, origin)
        if isinstance(started, Refused):
            if ts is not None:
                try:
                    self.slack.delete(channel, ts)
                except (SlackUnavailable, SlackRefused) as err:
                    log.warning("could not delete the parent of a refused deploy: %s", err)
            reply(blocks.render(started))
            return
        self.moved()

    def _post_parent(self, prepared: Prepared, channel: str, user: str, reply: Reply) -> str | None:
        """The parent message's ts; None when Slack is unavailable (the watcher posts it
        later); "" when Slack refuses to post there (then nothing is started)."""
        try:
            return self.slack.post(channel, blocks.starting(prepared.recipe.name, user))
        except SlackUnavailable as err:
            log.warning("parent message not posted (%s): the watcher will", err)
            return None
        except SlackRefused as err:
            reply(
                blocks.render(
                    Refused(
                        f"I cannot post in this channel ({err.error}): invite me to it, or"
                        " deploy from a channel I am in; nothing was started"
                    )
                )
            )
            return ""

    def _actor(self, team: str, user: str, reply: Reply) -> Actor | None:
        try:
            actor = self.identities.actor(team, user)
        except (SlackUnavailable, SlackRefused) as err:
            reply(blocks.render(Refused(f"I could not ask Slack who you are ({err}); try again")))
            return None
        if actor is None:
            reply(blocks.unknown_user(team, user))
        return actor

    # -- Approve and Cancel ------------------------------------------------------------

    def button(self, body: dict[str, Any]) -> None:
        """An Approve or Cancel press: the confirmation dialog, or an ephemeral refusal."""
        action = (body.get("actions") or [{}])[0]
        run_id = str(action.get("value", ""))
        decision = "approve" if action.get("action_id") == blocks.APPROVE else "reject"
        team, user = _who(body)
        channel = str((body.get("channel") or {}).get("id", ""))

        def tell(message: Message) -> None:
            self.slack.ephemeral(channel, user, message)

        actor = self._actor(team, user, tell)
        if actor is None:
            return
        try:
            run = self.service.run_approvable(actor, run_id)
        except SlipstreamError as err:
            tell(blocks.render(Refused(str(err))))
            return
        if run.approval != "pending":
            tell(
                blocks.render(
                    Refused(
                        f"run `{run_id}` is not waiting for an approval ({run.approval or 'none'})"
                    )
                )
            )
            return
        plan = [
            e.message for e in self.service.events(actor, run_id, 0, 100_000) if e.kind == "plan"
        ]
        view = blocks.confirm_view(run_id, run.deployment, decision, plan, {"channel": channel})
        self.slack.open_view(str(body.get("trigger_id", "")), view)

    def decision(self, body: dict[str, Any]) -> None:
        """The confirmation dialog was submitted: approve or reject the run."""
        view = body.get("view") or {}
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            return
        run_id, decision, channel = (
            str(meta.get("run")),
            meta.get("decision"),
            str(meta.get("channel")),
        )
        team, user = _who(body)

        def tell(message: Message) -> None:
            self.slack.ephemeral(channel, user, message)

        actor = self._actor(team, user, tell)
        if actor is None:
            return
        try:
            if decision == "approve":
                self.service.approve(actor, run_id)
            else:
                self.service.reject(actor, run_id)
        except SlipstreamError as err:
            tell(blocks.render(Refused(str(err))))
            return
        self.moved()


def _who(body: dict[str, Any]) -> tuple[str, str]:
    """(team, user) of an interaction payload."""
    user = body.get("user") or {}
    team = user.get("team_id") or (body.get("team") or {}).get("id") or ""
    return str(team), str(user.get("id", ""))
