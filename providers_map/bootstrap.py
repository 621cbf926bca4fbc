r"""User data that installs and starts the agent on a real cloud's machine.

The shipped script (``templates/bootstrap/agent-bootstrap.sh``) is escaped as a whole, so
Terraform leaves its shell ``${…}`` alone; only then are its six placeholders replaced by
Terraform interpolations, each wrapped so the value arrives as one single-quoted shell word
whatever it contains.

Example:
    >>> script = user_data()
    >>> '"$${SERVER%/}/agent/v1/agent.py"' in script
    True
    >>> print(next(line for line in script.splitlines() if line.startswith("TOKEN=")))
    TOKEN='${replace(var.agent_tokens[each.value.instance], "'", "'\\''")}'
"""

from __future__ import annotations

from typing import Any

import templates
from providers_map.base import escape

TEMPLATE = (templates.TEMPLATES_DIR / "bootstrap" / "agent-bootstrap.sh").read_text(
    encoding="utf-8"
)

# What a root needs declared for the script's values, besides COMMON_VARIABLES.
AGENT_VARIABLES: dict[str, Any] = {
    "server_url": {"type": "string", "description": "where agents reach the service"},
    "server_fingerprint": {
        "type": "string",
        "default": "",
        "description": "sha256:<hex> of the server's certificate, which agents pin",
    },
    "agent_sha256": {"type": "string", "description": "SHA-256 of the agent file to run"},
    "agent_tokens": {
        "type": "map(string)",
        "sensitive": True,
        "description": "per-instance agent tokens, by instance name",
    },
}

# HCL's "'\\''" is the shell's '\'' : close the quote, a literal quote, reopen.
_QUOTED = r"""'${replace(EXPR, "'", "'\\''")}'"""


def shell_quoted(expression: str) -> str:
    r"""A Terraform template piece giving ``expression``'s value as one quoted shell word.

    Example:
        >>> print(shell_quoted("var.run_id"))
        '${replace(var.run_id, "'", "'\\''")}'
    """
    return _QUOTED.replace("EXPR", expression)


def _values(instance: str) -> dict[str, str]:
    return {
        "__SLIPSTREAM_SERVER__": "var.server_url",
        "__SLIPSTREAM_RUN_ID__": "var.run_id",
        "__SLIPSTREAM_INSTANCE__": instance,
        "__SLIPSTREAM_TOKEN__": f"var.agent_tokens[{instance}]",
        "__SLIPSTREAM_FINGERPRINT__": "var.server_fingerprint",
        "__SLIPSTREAM_AGENT_SHA256__": "var.agent_sha256",
    }


def user_data(instance: str = "each.value.instance") -> str:
    """The bootstrap script as a Terraform JSON string, for the instance named by ``instance``
    (a Terraform expression: ``each.value.instance`` inside a ``for_each`` over
    :func:`providers_map.base.instance_map`).

    Example:
        >>> "var.agent_tokens[self.input.instance]" in user_data("self.input.instance")
        True
    """
    script = escape(TEMPLATE)
    for placeholder, expression in _values(instance).items():
        script = script.replace(placeholder, shell_quoted(expression))
    return script


# What a literal character becomes inside an HCL quoted template ("…").
_HCL_QUOTED = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def user_data_base64(instance: str = "each.value.instance") -> str:
    r""":func:`user_data` base64-encoded by Terraform, for clouds whose argument takes
    base64 (Azure ``custom_data``, vCD's ``user-data`` guest property, OpenNebula's
    ``START_SCRIPT_BASE64``): one ``base64encode("…")`` call on the same script written as
    an HCL quoted template, so Terraform fills in the same six values before encoding.

    Example:
        >>> encoded = user_data_base64()
        >>> encoded.startswith('${base64encode("#!/bin/sh\\n# SlipStream agent bootstrap')
        True
        >>> shell_quoted("var.server_url") in encoded
        True
    """
    literal = "".join(_HCL_QUOTED.get(c, c) for c in escape(TEMPLATE))
    for placeholder, expression in _values(instance).items():
        literal = literal.replace(placeholder, shell_quoted(expression))
    return '${base64encode("' + literal + '")}'
