"""What Terraform says, as types: events from ``-json`` lines, results, and errors.

``parse_line`` turns one line of machine-readable output into a ``TfEvent``; a type this
module does not know is kept as it came, never an error (STYLE 5). Each command has a result
type. ``classify`` is the one place that maps a failed command to an error type (STYLE 7).

Example:
    >>> line = '{"type": "apply_complete", "@level": "info", "@message": "a: done", '
    >>> line += '"hook": {"resource": {"addr": "a"}, "action": "create", "elapsed_seconds": 2}}'
    >>> event = parse_line(line)
    >>> (event.type, event.resource, event.action, event.elapsed_s)
    ('apply_complete', 'a', 'create', 2.0)
    >>> parse_line('{"type": "from_the_future", "x": 1}').raw["x"]
    1
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import (
    ConfigInvalid,
    Diagnostic,
    ProviderUnavailable,
    StateLocked,
    TerraformCancelled,
    TerraformError,
    TerraformTimeout,
)

# Terraform's internal/command/views/json/message_types.go, as of 1.11.
KNOWN_TYPES = frozenset(
    {
        *("version", "log", "diagnostic", "init_output", "outputs"),
        *("planned_change", "change_summary", "resource_drift"),
        *("apply_start", "apply_progress", "apply_complete", "apply_errored"),
        *("provision_start", "provision_progress", "provision_complete", "provision_errored"),
        *("refresh_start", "refresh_complete"),
        *("ephemeral_op_start", "ephemeral_op_progress", "ephemeral_op_complete"),
        "ephemeral_op_errored",
        *("test_abstract", "test_file", "test_run", "test_plan", "test_state"),
        *("test_cleanup", "test_summary", "test_interrupt"),
    }
)
TEXT = "text"  # a line that was not a JSON object: shown as a plain message


@dataclass(frozen=True, slots=True)
class TfEvent:
    """One thing Terraform reported while running ``step`` (``raw`` is the line as parsed).

    Example:
        >>> TfEvent(type="text", message="hello").known
        False
    """

    type: str
    level: str = "info"
    message: str = ""
    resource: str | None = None
    action: str | None = None
    elapsed_s: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    diagnostic: Diagnostic | None = None
    step: str = ""

    @property
    def known(self) -> bool:
        """Whether ``type`` is one Terraform documents (anything else is kept as is)."""
        return self.type in KNOWN_TYPES


def parse_line(line: str) -> TfEvent | None:
    """The event for one line of ``-json`` output; ``None`` for a blank line.

    Example:
        >>> parse_line("Terraform crashed!").type
        'text'
        >>> parse_line("   ") is None
        True
    """
    text = line.strip()
    if not text:
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        return TfEvent(type=TEXT, message=text)
    return event_from_json(raw)


def event_from_json(raw: Mapping[str, Any]) -> TfEvent:
    """The event for one parsed JSON object from Terraform.

    Example:
        >>> event = event_from_json({"type": "diagnostic", "@level": "error",
        ...     "diagnostic": {"severity": "error", "summary": "Nope", "address": "a.b"}})
        >>> event.level, event.resource, str(event.diagnostic)
        ('error', 'a.b', 'a.b: Nope')
    """
    # Resource-level events carry the resource under "hook" (apply, provision, refresh)
    # or "change" (planned_change, resource_drift).
    body = raw.get("hook") or raw.get("change") or {}
    if not isinstance(body, Mapping):
        body = {}
    resource = body.get("resource") if isinstance(body.get("resource"), Mapping) else {}
    diag = raw.get("diagnostic")
    diagnostic = Diagnostic.from_json(diag) if isinstance(diag, Mapping) else None
    elapsed = body.get("elapsed_seconds")
    return TfEvent(
        type=str(raw.get("type") or "unknown"),
        level=str(raw.get("@level") or "info"),
        message=str(raw.get("@message") or ""),
        resource=(resource or {}).get("addr") or (diagnostic.address if diagnostic else None),
        action=body.get("action"),
        elapsed_s=float(elapsed) if isinstance(elapsed, int | float) else None,
        raw=raw,
        diagnostic=diagnostic,
    )


@dataclass(frozen=True, slots=True)
class StepResult:
    """What every successful command leaves: its argv (without the executable) and artifacts."""

    step: str
    argv: list[str]
    duration_s: float
    warnings: list[Diagnostic]
    stdout: Path
    stderr: Path


@dataclass(frozen=True, slots=True)
class InitResult(StepResult):
    """``terraform init`` succeeded."""


@dataclass(frozen=True, slots=True)
class ValidateResult(StepResult):
    """``terraform validate`` found no errors (``warnings`` may still say something)."""


@dataclass(frozen=True, slots=True)
class PlanResult(StepResult):
    """A saved plan and what it would do: ``changes`` counts add/change/remove.

    Example:
        >>> plan = PlanResult("plan", ["plan"], 0.2, [], Path("plan.stdout.jsonl"),
        ...     Path("plan.stderr.txt"), Path("plan.bin"), {"add": 1, "change": 0, "remove": 0},
        ...     [("terraform_data.a", "create")])
        >>> plan.has_changes
        True
    """

    plan_file: Path
    changes: dict[str, int]
    resource_changes: list[tuple[str, str]]  # (address, action) per planned change

    @property
    def has_changes(self) -> bool:
        """Whether applying this plan would change anything."""
        return any(self.changes.values())


@dataclass(frozen=True, slots=True)
class ApplyResult(StepResult):
    """A plan was applied: ``changes`` counts and the addresses of completed resources."""

    changes: dict[str, int]
    applied: list[str]


def changes_from(events: Sequence[TfEvent]) -> dict[str, int]:
    """The add/change/remove counts of the last ``change_summary`` event (zeros if none).

    Example:
        >>> changes_from([TfEvent("change_summary", raw={"changes": {"add": 2, "remove": 1}})])
        {'add': 2, 'change': 0, 'remove': 1}
    """
    summaries = [e.raw.get("changes") for e in events if e.type == "change_summary"]
    last = summaries[-1] if summaries and isinstance(summaries[-1], Mapping) else {}
    return {key: int(last.get(key, 0)) for key in ("add", "change", "remove")}


def validate_document(text: str) -> tuple[str, list[TfEvent]]:
    """``validate -json`` stdout as a one-line artifact and one event per diagnostic.

    Example:
        >>> doc = '{"valid": false, "diagnostics": [{"severity": "error", "summary": "Bad"}]}'
        >>> _, events = validate_document(doc)
        >>> [(e.type, e.level, e.message) for e in events]
        [('diagnostic', 'error', 'Bad')]
    """
    doc = _load(text)
    if not isinstance(doc, dict):
        return text, []
    events = [
        event_from_json(
            {
                "type": "diagnostic",
                "@level": d.get("severity"),
                "@message": d.get("summary"),
                "diagnostic": d,
            }
        )
        for d in doc.get("diagnostics") or []
        if isinstance(d, Mapping)
    ]
    return json.dumps(doc, sort_keys=True) + "\n", events


def outputs_document(text: str) -> tuple[str, list[TfEvent]]:
    """``output -json`` stdout as a one-line artifact with sensitive values hidden.

    Example:
        >>> outputs_document('{"token": {"sensitive": true, "value": "s3cret"}}')[0]
        '{"token": {"sensitive": true, "value": "(sensitive)"}}\\n'
    """
    doc = _load(text)
    if not isinstance(doc, dict):
        return text, []
    hidden = {"value": "(sensitive)"}
    doc = {
        k: v | hidden if isinstance(v, dict) and v.get("sensitive") else v for k, v in doc.items()
    }
    return json.dumps(doc, sort_keys=True) + "\n", []


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# Once a saved plan is applied, the configuration was already accepted: an "Invalid …"
# then comes from a cloud API, not from the recipe.
_APPLYING = frozenset({"apply", "destroy"})
# Wrappers Terraform adds after the diagnostic that says what went wrong.
_GENERIC = re.compile(
    r"^(Terraform encountered problems during initiali[sz]ation|execution halted)"
)
_LOCKED = re.compile(r"^Error (acquiring|locking) (the )?state( lock)?", re.I)
_PROVIDER = re.compile(
    r"^(Failed to (query|install|resolve|download|obtain)\b.*provider|Incompatible provider"
    r"|Invalid provider registry host|Unavailable provider plugin|Provider registry)",
    re.I,
)
_CONFIG = re.compile(
    r"^(Unsupported (argument|block type|attribute|Terraform Core version)|Missing required"
    r" argument|Reference to undeclared|Invalid |Unclosed configuration block|Argument"
    r" (or block )?definition required|Duplicate |No value for required variable"
    r"|Value for undeclared variable|Missing (newline|item separator|name)|Extraneous label"
    r"|Incorrect attribute value type|(Variables|Function calls) not allowed"
    r"|Call to unknown function|Unknown variable|Unexpected |Terraform encountered problems"
    r" during initiali[sz]ation)",
    re.I,
)


def classify(
    step: str,
    diagnostics: Sequence[Diagnostic],
    stderr_tail: str = "",
    *,
    returncode: int | None = None,
    cancelled: bool = False,
    timed_out: bool = False,
) -> TerraformError:
    """The error for a failed ``step``, from its diagnostics (or stderr when it had none).

    Example:
        >>> err = classify("apply", [Diagnostic("error", "Error acquiring the state lock")])
        >>> type(err).__name__, str(err)
        ('StateLocked', 'terraform apply: Error acquiring the state lock')
    """
    errors = [d for d in diagnostics if d.severity == "error"]
    specific = [d for d in errors if not _GENERIC.match(d.summary)] or errors
    if specific:
        reason = str(specific[0])
        if len(specific) > 1:
            reason += f" (and {len(specific) - 1} more)"
    else:
        last = [ln.strip() for ln in stderr_tail.splitlines() if ln.strip(" ╷│╵\t")]
        reason = last[-1].strip(" │") if last else f"exit status {returncode}"
    kind: type[TerraformError] = TerraformError
    summaries = [d.summary for d in errors]
    if timed_out:
        kind, reason = TerraformTimeout, "timed out and was interrupted"
    elif cancelled:
        kind, reason = TerraformCancelled, "cancelled"
    elif any(_LOCKED.match(s) for s in summaries):
        kind = StateLocked
    elif any(_PROVIDER.match(s) for s in summaries):
        kind = ProviderUnavailable
    elif (errors and step == "validate") or (
        step not in _APPLYING and any(_CONFIG.match(s) for s in summaries)
    ):
        kind = ConfigInvalid
    return kind(step, reason, stderr_tail, errors)
