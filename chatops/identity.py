"""Who a Slack user is in the service.

A Slack user (``TEAM:USER``) is the product user linked to it (``slipstream user link NAME
--slack TEAM:USER``), else the product user whose e-mail address is the one of their Slack
profile (asked through ``users.info``; the match is then linked, so Slack is asked once).
Anyone else is unknown, and may only ask for ``help``.

Example (not run: it needs a service)::

        identities = SlackIdentities(service, slack.user_email)
        identities.actor("T0001", "U0001")
        # Actor(name='alice', admin=False, rights=frozenset({('webapp', 'approve')}))
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from engine.access import Actor
from engine.errors import NotAuthenticated
from engine.service import Service

log = logging.getLogger(__name__)
PROVIDER = "slack"


def slack_id(team: str, user: str) -> str:
    """The external id identities are stored under.

    >>> slack_id("T0001", "U0001")
    'T0001:U0001'
    """
    return f"{team}:{user}"


class SlackIdentities:
    """Maps Slack users to actors; ``email_of`` asks Slack for a user's e-mail address."""

    def __init__(self, service: Service, email_of: Callable[[str], str | None]) -> None:
        self.service = service
        self.email_of = email_of

    def actor(self, team: str, user: str) -> Actor | None:
        """The actor ``TEAM:USER`` acts as, or None for someone the service does not know.
        Errors reaching Slack propagate (the caller says Slack could not be asked)."""
        accounts = self.service.accounts
        name = accounts.linked_user(PROVIDER, slack_id(team, user))
        if name is None:
            name = self._by_email(team, user)
        if name is None:
            return None
        try:
            return self.service.access.actor(name)
        except NotAuthenticated:  # linked to a user since removed
            return None

    def _by_email(self, team: str, user: str) -> str | None:
        email = self.email_of(user)
        if not email:
            return None
        wanted = email.strip().lower()
        matches = [
            u.name for u in self.service.accounts.users() if (u.email or "").lower() == wanted
        ]
        if len(matches) != 1:  # none, or ambiguous: an administrator links by hand
            return None
        self.service.accounts.link(PROVIDER, slack_id(team, user), matches[0])
        log.info("linked Slack user %s to %s by e-mail address", slack_id(team, user), matches[0])
        return matches[0]
