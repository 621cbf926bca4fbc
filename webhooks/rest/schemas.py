"""The REST API's documents: marshmallow schemas that validate requests, shape answers and
are the OpenAPI document's components (APIFlask reads them; nothing is written twice).

Example:
    >>> RunCreate().load({"deployment": "webapp", "multiplicity": {"web": 3}})["multiplicity"]
    {'web': 3}
    >>> RunCreate().validate({"deployment": "webapp", "hold": "maybe"})
    {'hold': ['Not a valid boolean.']}
"""

from __future__ import annotations

from typing import Any

from apiflask import Schema
from apiflask.fields import Boolean as LooseBoolean
from apiflask.fields import Dict, Float, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp

from engine.access import RIGHTS, USER_NAME
from engine.coordination.coordinator import STATES
from engine.recipes.schema import NAME_RE, PARAM_RE
from engine.service import MAX_BUNDLE_FILE_BYTES, MAX_BUNDLE_FILES

#: A run id, a token id: what the store makes (16 and 12 hex digits).
RUN_ID = r"^[0-9a-f]{16}$"
DURATION = r"^[0-9]{1,6}[smhd]$"
#: A deployment's name, or the path of a recipe file of the bundle.
DEPLOYMENT = r"^([a-z][a-z0-9-]{0,62}|[^\\]+\.ya?ml)$"
MAX_PAGE = 500
#: ``:`` would make a bare deployment name and a path look alike; ``*`` is every deployment.
SCOPE = r"^(\*|[a-z][a-z0-9-]{0,62})$"


class Boolean(LooseBoolean):
    """true or false, not 1, "yes" or "on" (what the document says is what is accepted).

    >>> Boolean().deserialize(0)
    Traceback (most recent call last):
    ...
    marshmallow.exceptions.ValidationError: Not a valid boolean.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Error(Schema):
    """Every error answer: a stable ``code``, a sentence, and what it is about."""

    code = String(required=True, metadata={"example": "forbidden"})
    message = String(
        required=True, metadata={"example": "bob lacks the `deploy` right on deployment `webapp`"}
    )
    details = Dict(
        required=True,
        metadata={
            "description": "400: {location: {field: [messages]}}; 403: {right, scope}; "
            "422: {problems: [{file, line, column, message}]}"
        },
    )


# -- runs ---------------------------------------------------------------------------------


class Overrides(Schema):
    inputs = Dict(
        keys=String(validate=Regexp(PARAM_RE)),
        values=String(validate=Length(max=4096)),
        load_default=dict,
        metadata={"description": "deployment inputs, by name", "example": {"greeting": "Hi"}},
    )
    clouds = Dict(
        keys=String(validate=Regexp(NAME_RE)),
        values=List(String(validate=Regexp(NAME_RE)), validate=Length(1, 64)),
        load_default=dict,
        metadata={"description": "clouds of a node (instances spread round-robin)"},
    )
    multiplicity = Dict(
        keys=String(validate=Regexp(NAME_RE)),
        values=Integer(validate=Range(0, 99999)),
        load_default=dict,
        metadata={"description": "instances of a node"},
    )


class Bundle(Overrides):
    deployment = String(
        required=True,
        validate=[Length(1, 1000), Regexp(DEPLOYMENT)],
        metadata={
            "description": "a deployment name such as webapp (found among the files, then "
            "in the shipped templates) or the path of one of the files",
        },
    )
    files = Dict(
        keys=String(validate=Length(1, 1000)),
        values=String(validate=Length(max=MAX_BUNDLE_FILE_BYTES)),
        validate=Length(max=MAX_BUNDLE_FILES),
        load_default=dict,
        metadata={"description": "recipe files: relative path → YAML text"},
    )


class RunCreate(Bundle):
    hold = Boolean(load_default=False, metadata={"description": "plan, then wait for an approval"})


class Event(Schema):
    id = Integer(required=True)
    at = Float(required=True, metadata={"description": "Unix time"})
    kind = String(required=True, metadata={"example": "state"})
    message = String(required=True)
    data = Dict(required=True)


class Run(Schema):
    id = String(required=True)
    deployment = String(required=True)
    user = String(required=True)
    state = String(required=True, validate=OneOf(STATES))
    abort = String(required=True, allow_none=True)
    approval = String(
        required=True, metadata={"description": "'' (none needed), pending, approved, rejected"}
    )
    checkpoint = String(
        required=True, metadata={"description": "'', planned, applied, destroyed, …"}
    )
    url = String(required=True, allow_none=True, metadata={"description": "ss:url.service"})
    params = Dict(keys=String(), values=String(), required=True)
    events = List(Nested(Event), required=True, metadata={"description": "the last ones"})
    events_before = Integer(
        required=True, metadata={"description": "how many earlier events are not included"}
    )


class RunQuery(Schema):
    events = Integer(
        load_default=100,
        validate=Range(0, 100_000),
        metadata={"description": "how many of the last events to include"},
    )


class RunBrief(Schema):
    id = String(required=True)
    deployment = String(required=True)
    user = String(required=True)
    state = String(required=True)
    abort = String(required=True, allow_none=True)
    approval = String(required=True)
    created_at = Float(required=True)
    updated_at = Float(required=True)


class RunListQuery(Schema):
    state = List(String(validate=OneOf(STATES)), metadata={"description": "any of these"})
    deployment = String(validate=Regexp(NAME_RE))
    user = String(validate=Regexp(USER_NAME.pattern))
    limit = Integer(load_default=100, validate=Range(1, MAX_PAGE))
    cursor = String(
        validate=Regexp(r"^[0-9]{1,12}(\.[0-9]{1,9})?$"),
        metadata={"description": "`next` of the previous page"},
    )


class RunPage(Schema):
    runs = List(Nested(RunBrief), required=True)
    next = String(
        required=True, allow_none=True, metadata={"description": "cursor of the next page"}
    )


class RunAction(Schema):
    id = String(required=True)
    state = String(required=True, metadata={"description": "the state now; a job goes on"})


class ScaleRequest(Schema):
    changes = List(
        String(validate=Length(max=80)),
        load_default=list,
        validate=Length(max=16),
        metadata={"description": "NODE=+N or NODE=-N", "example": ["worker=+2"]},
    )
    remove = List(
        String(validate=Length(max=80)),
        load_default=list,
        validate=Length(max=100),
        metadata={"description": "instances to remove, NODE.INDEX (without `changes`)"},
    )


class Params(Schema):
    id = String(required=True)
    params = Dict(
        keys=String(),
        values=String(),
        required=True,
        metadata={"description": "sensitive values are shown as ***"},
    )


class EventQuery(Schema):
    after = Integer(load_default=0, validate=Range(0, 2**62), metadata={"description": "event id"})
    limit = Integer(load_default=1000, validate=Range(1, 1000))


class EventPage(Schema):
    events = List(Nested(Event), required=True)


class Counts(Schema):
    add = Integer(required=True)
    change = Integer(required=True)
    destroy = Integer(required=True)


class CloudPlan(Counts):
    nodes = Dict(keys=String(), values=Nested(Counts), required=True)


class Plan(Schema):
    deployment = String(required=True)
    user = String(required=True)
    clouds = Dict(keys=String(), values=Nested(CloudPlan), required=True)


# -- users, tokens, rights ----------------------------------------------------------------


class Grant(Schema):
    right = String(required=True, validate=OneOf(RIGHTS))
    deployment = String(
        required=True,
        validate=Regexp(SCOPE),
        metadata={"description": "a deployment name, or * for every deployment"},
    )


class UserCreate(Schema):
    name = String(required=True, validate=Regexp(USER_NAME.pattern))
    admin = Boolean(load_default=False)
    email = String(load_default=None, allow_none=True, validate=Length(max=320))


class User(Schema):
    name = String(required=True)
    admin = Boolean(required=True)
    email = String(required=True, allow_none=True)
    created_at = Float(required=True)
    rights = List(Nested(Grant), required=True)


class UserList(Schema):
    users = List(Nested(User), required=True)


class GrantDone(Grant):
    user = String(required=True)


class TokenCreate(Schema):
    user = String(
        validate=Regexp(USER_NAME.pattern),
        metadata={"description": "whose token (default: yours; others': admins only)"},
    )
    description = String(load_default="", validate=Length(max=200))
    expires = String(
        load_default=None,
        allow_none=True,
        validate=Regexp(DURATION),
        metadata={"description": "lifetime such as 30d, 12h, 90m (default: none)"},
    )


class Token(Schema):
    id = String(required=True)
    user = String(required=True)
    description = String(required=True)
    created_at = Float(required=True)
    expires_at = Float(required=True, allow_none=True)
    revoked_at = Float(required=True, allow_none=True)
    last_used_at = Float(required=True, allow_none=True)


class TokenMade(Token):
    token = String(required=True, metadata={"description": "shown this once"})


class TokenQuery(Schema):
    user = String(
        validate=Regexp(USER_NAME.pattern),
        metadata={"description": "whose tokens (default: yours, or everyone's for admins)"},
    )


class TokenList(Schema):
    tokens = List(Nested(Token), required=True)


class Whoami(Schema):
    name = String(required=True)
    admin = Boolean(required=True)
    rights = List(Nested(Grant), required=True)
