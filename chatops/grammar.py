"""The command grammar of every text front end (Slack's ``/slipstream``, pull-request
comments): text in, a typed command out, or a :class:`ParseError` naming the bad token and
the nearest valid word. No Slack here, and nothing that runs anything.

The language::

    deploy <recipe> [on <cloud>] [<node>=<cloud>…] [<input>=<value>…] [x<n> <node>…]
    plan <recipe> …            (the same, held for an approval)
    status [<run>]    list [mine|all]    params <run>    logs <run>
    scale <run> <node>=+N|-N…  destroy <run>  approve <run>  help [<command>]

Values may be quoted (``greeting="Hello world"``; Slack's curly quotes count too). What is
accepted can never become a path, an option or shell syntax: recipe, node and cloud names
must match the recipe language's name pattern, input names its parameter pattern, and no
token or value may hold a control character or one of `` ` $ ; | & < > \\ `` (such values
go through the CLI or the REST API). A ``key=value`` whose key names a node of the
deployment sets that node's cloud; any other key is an input (:meth:`Deploy.overrides`).

Example:
    >>> cmd = parse('deploy webapp on aws-eu greeting="Hello world" x3 web')
    >>> cmd.recipe, cmd.cloud, cmd.assignments, cmd.counts
    ('webapp', 'aws-eu', (('greeting', 'Hello world'),), (('web', 3),))
    >>> parse("deplyo webapp")
    Traceback (most recent call last):
    ...
    chatops.grammar.ParseError: `deplyo` is not a command; did you mean `deploy`?
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from engine.recipes.overrides import Overrides
from engine.recipes.schema import NAME_RE, PARAM_RE

#: Longer texts are refused whole: no command needs more.
MAX_TEXT = 2000
MAX_TOKENS = 64
MAX_VALUE = 1000
#: Never accepted anywhere, quoted or not: they mean something to a shell.
FORBIDDEN = frozenset("`$;|&<>\\")
_QUOTES = {"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"}
_RUN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COUNT = re.compile(r"^x([0-9]{1,3})$")
_DELTA = re.compile(r"^[+-][1-9][0-9]{0,2}$")

USAGE = {
    "deploy": "deploy RECIPE [on CLOUD] [NODE=CLOUD…] [INPUT=VALUE…] [xN NODE…]",
    "plan": "plan RECIPE [on CLOUD] [NODE=CLOUD…] [INPUT=VALUE…] [xN NODE…]",
    "status": "status [RUN]",
    "list": "list [mine|all]",
    "params": "params RUN",
    "logs": "logs RUN",
    "scale": "scale RUN NODE=+N|-N…",
    "destroy": "destroy RUN",
    "approve": "approve RUN",
    "help": "help [COMMAND]",
}
VERBS = tuple(USAGE)


class ParseError(ValueError):
    """Text that is not a command: ``token`` is the bad part (None when the whole text is),
    ``suggestion`` the nearest valid word, ``usage`` the form the command takes.

    Example:
        >>> err = ParseError("`lst` is not a command", "lst", "list")
        >>> str(err), err.usage
        ('`lst` is not a command; did you mean `list`?', None)
    """

    def __init__(
        self,
        message: str,
        token: str | None = None,
        suggestion: str | None = None,
        usage: str | None = None,
    ) -> None:
        self.message = message
        self.token = token
        self.suggestion = suggestion
        self.usage = usage
        hint = f"; did you mean `{suggestion}`?" if suggestion else ""
        super().__init__(message + hint)


# -- commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class Deploy:
    """``deploy`` (or ``plan``: ``hold``, the run waits for an approval)."""

    recipe: str
    cloud: str | None = None
    assignments: tuple[tuple[str, str], ...] = ()
    counts: tuple[tuple[str, int], ...] = ()
    hold: bool = False

    def overrides(self, nodes: Collection[str]) -> Overrides:
        """The run's overrides once the deployment's ``nodes`` are known: a key naming a
        node sets its cloud, any other key is an input; ``on CLOUD`` places every node not
        placed by name.

        >>> Deploy("webapp", "aws", (("db", "local"), ("greeting", "hi"))).overrides(
        ...     ["db", "web"]).clouds
        {'db': ('local',), 'web': ('aws',)}
        """
        clouds: dict[str, tuple[str, ...]] = {}
        inputs: dict[str, str] = {}
        for key, value in self.assignments:
            if key in nodes:
                if not re.match(NAME_RE, value):
                    raise ParseError(
                        f"`{key}={value}`: `{value}` is not a cloud name", f"{key}={value}"
                    )
                clouds[key] = (value,)
            else:
                inputs[key] = value
        for node, _ in self.counts:
            if node not in nodes:
                raise ParseError(
                    f"`{node}` is not a node of `{self.recipe}`",
                    node,
                    _nearest(node, nodes),
                    USAGE["deploy"],
                )
        if self.cloud is not None:
            for node in nodes:
                clouds.setdefault(node, (self.cloud,))
        return Overrides(inputs, clouds, dict(self.counts))

    def to_text(self) -> str:
        """The command as text the grammar reads back (every command has this).

        >>> Deploy("webapp", "aws", (("greeting", "hi there"),), (("web", 3),)).to_text()
        'deploy webapp on aws greeting="hi there" x3 web'
        """
        words = ["plan" if self.hold else "deploy", self.recipe]
        if self.cloud is not None:
            words += ["on", self.cloud]
        words += [f"{k}={quote(v)}" for k, v in self.assignments]
        for node, n in self.counts:
            words += [f"x{n}", node]
        return " ".join(words)


@dataclass(frozen=True)
class Status:
    """``status [RUN]``: a run's state and last events (None: the asker's newest run)."""

    run: str | None = None

    def to_text(self) -> str:
        return "status" + (f" {self.run}" if self.run else "")


@dataclass(frozen=True)
class ListRuns:
    """``list [mine|all]``: the newest runs the asker may see (``mine``: only theirs)."""

    scope: Literal["mine", "all"] = "all"

    def to_text(self) -> str:
        return f"list {self.scope}"


@dataclass(frozen=True)
class Params:
    """``params RUN``: a run's runtime parameters."""

    run: str

    def to_text(self) -> str:
        return f"params {self.run}"


@dataclass(frozen=True)
class Logs:
    """``logs RUN``: a run's last events."""

    run: str

    def to_text(self) -> str:
        return f"logs {self.run}"


@dataclass(frozen=True)
class Scale:
    """``scale RUN NODE=+N|-N…``: instances to add to (or remove from) nodes of a run."""

    run: str
    changes: tuple[tuple[str, int], ...]

    def to_text(self) -> str:
        return " ".join(["scale", self.run, *(f"{n}={d:+d}" for n, d in self.changes)])


@dataclass(frozen=True)
class Destroy:
    """``destroy RUN``: end a run (or cancel one on its way)."""

    run: str

    def to_text(self) -> str:
        return f"destroy {self.run}"


@dataclass(frozen=True)
class Approve:
    """``approve RUN``: let a held run go on."""

    run: str

    def to_text(self) -> str:
        return f"approve {self.run}"


@dataclass(frozen=True)
class Help:
    """``help [COMMAND]``: every command's usage, or one's."""

    topic: str | None = None

    def to_text(self) -> str:
        return "help" + (f" {self.topic}" if self.topic else "")


Command = Deploy | Status | ListRuns | Params | Logs | Scale | Destroy | Approve | Help


# -- words ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """A word of the text; ``quoted`` when any part of it was (then it is never a keyword)."""

    text: str
    quoted: bool


def tokenize(text: str) -> list[Token]:
    """Split ``text`` at blanks outside quotes; adjacent quoted and bare parts join.

    >>> [t.text for t in tokenize("deploy webapp greeting='hi there'")]
    ['deploy', 'webapp', 'greeting=hi there']
    """
    if len(text) > MAX_TEXT:
        raise ParseError(
            f"the text is {len(text)} characters long; a command has at most {MAX_TEXT}"
        )
    for ch in text:
        if (ord(ch) < 32 and ch not in "\t\n\r") or 127 <= ord(ch) < 160:
            raise ParseError(f"control character U+{ord(ch):04X} in the text")
    text = "".join(_QUOTES.get(ch, ch) for ch in text)
    tokens: list[Token] = []
    current: list[str] = []
    quoted = in_token = False
    quote: str | None = None
    start = 0
    for i, ch in enumerate(text):
        if quote is not None:
            if ch == quote:
                quote = None
            else:
                current.append(ch)
        elif ch.isspace():
            if in_token:
                tokens.append(Token("".join(current), quoted))
            current, quoted, in_token = [], False, False
        else:
            if not in_token:
                start, in_token = i, True
            if ch in "\"'":
                quote, quoted = ch, True
            else:
                current.append(ch)
    if quote is not None:
        raise ParseError(f"`{text[start:].strip()}`: the {quote} quote is never closed")
    if in_token:
        tokens.append(Token("".join(current), quoted))
    if len(tokens) > MAX_TOKENS:
        raise ParseError(f"{len(tokens)} words; a command has at most {MAX_TOKENS}")
    for token in tokens:
        bad = next((ch for ch in token.text if ch in FORBIDDEN), None)
        if bad is not None:
            raise ParseError(
                f"`{token.text}`: `{bad}` is never accepted from chat, quoted or not"
                " (it is shell syntax; the CLI and the REST API take any value)",
                token.text,
            )
    return tokens


def quote(value: str) -> str:
    """``value`` as the grammar reads it back (quoted when it must be).

    >>> quote("hi"), quote("Hello world"), quote('say "hi"')
    ('hi', '"Hello world"', '\\'say "hi"\\'')
    """
    if value and not any(ch.isspace() or ch in "\"'" for ch in value):
        return value
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    return "'\"'".join(f'"{part}"' for part in value.split('"'))


def _nearest(word: str, choices: Collection[str]) -> str | None:
    found = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


# -- parsing -------------------------------------------------------------------------


def parse(text: str) -> Command:
    """The command ``text`` says; :class:`ParseError` (and nothing else) when it says none.

    >>> parse("status"), parse("list mine"), parse("scale 3f2a web=+2")
    (Status(run=None), ListRuns(scope='mine'), Scale(run='3f2a', changes=(('web', 2),)))
    """
    tokens = tokenize(text)
    if not tokens:
        return Help()
    head, rest = tokens[0], tokens[1:]
    verb = head.text.lower()
    if verb not in VERBS or head.quoted:
        raise ParseError(f"`{head.text}` is not a command", head.text, _nearest(verb, VERBS))
    usage = USAGE[verb]
    if verb in ("deploy", "plan"):
        return _deploy(rest, hold=verb == "plan")
    if verb == "scale":
        return _scale(rest)
    words = [t.text for t in rest]
    if verb == "help":
        _at_most(words, 1, verb)
        if words and words[0].lower() not in VERBS:
            raise ParseError(
                f"`{words[0]}` is not a command", words[0], _nearest(words[0], VERBS), usage
            )
        return Help(words[0].lower() if words else None)
    if verb == "list":
        _at_most(words, 1, verb)
        scope = words[0].lower() if words else "all"
        if scope == "mine":
            return ListRuns("mine")
        if scope == "all":
            return ListRuns("all")
        raise ParseError(
            f"`{words[0]}`: expected `mine` or `all`",
            words[0],
            _nearest(scope, ("mine", "all")),
            usage,
        )
    if verb == "status":
        _at_most(words, 1, verb)
        return Status(_run(words[0], verb) if words else None)
    if not words:
        raise ParseError(f"`{verb}` needs a run id", None, None, usage)
    _at_most(words, 1, verb)
    run = _run(words[0], verb)
    if verb == "params":
        return Params(run)
    if verb == "logs":
        return Logs(run)
    if verb == "destroy":
        return Destroy(run)
    return Approve(run)


def _at_most(words: list[str], n: int, verb: str) -> None:
    if len(words) > n:
        extra = words[n]
        raise ParseError(f"`{extra}`: unexpected after `{verb}`", extra, None, USAGE[verb])


def _run(word: str, verb: str) -> str:
    if not _RUN.match(word):
        raise ParseError(f"`{word}` is not a run id", word, None, USAGE[verb])
    return word


def _name(word: str, what: str, usage: str) -> str:
    if not re.match(NAME_RE, word):
        raise ParseError(
            f"`{word}` is not a {what} name (lowercase letters, digits and '-', "
            "starting with a letter)",
            word,
            None,
            usage,
        )
    return word


def _deploy(tokens: list[Token], hold: bool) -> Deploy:
    usage = USAGE["plan" if hold else "deploy"]
    if not tokens:
        raise ParseError(f"`{'plan' if hold else 'deploy'}` needs a recipe name", None, None, usage)
    recipe = _name(tokens[0].text, "recipe", usage)
    cloud: str | None = None
    assignments: dict[str, str] = {}
    counts: dict[str, int] = {}
    i = 1
    while i < len(tokens):
        word = tokens[i].text
        count = _COUNT.match(word) if not tokens[i].quoted else None
        if word == "on" and not tokens[i].quoted:
            if i + 1 >= len(tokens):
                raise ParseError("`on` needs a cloud name", "on", None, usage)
            if cloud is not None:
                raise ParseError("`on CLOUD` is given twice", "on", None, usage)
            cloud = _name(tokens[i + 1].text, "cloud", usage)
            i += 2
        elif count is not None:
            if i + 1 >= len(tokens):
                raise ParseError(f"`{word}` needs a node name", word, None, usage)
            counts[_name(tokens[i + 1].text, "node", usage)] = int(count.group(1))
            i += 2
        elif "=" in word:
            key, _, value = word.partition("=")
            if not re.match(PARAM_RE, key):
                raise ParseError(
                    f"`{word}`: `{key}` is not a node or input name"
                    " (options are not accepted from chat)",
                    word,
                    None,
                    usage,
                )
            if len(value) > MAX_VALUE:
                raise ParseError(
                    f"`{key}`: the value is {len(value)} characters long, at most {MAX_VALUE}",
                    key,
                )
            assignments[key] = value
            i += 1
        else:
            raise ParseError(
                f"`{word}`: expected `on CLOUD`, `NODE=CLOUD`, `INPUT=VALUE` or `xN NODE`",
                word,
                _nearest(word, ("on",)),
                usage,
            )
    return Deploy(recipe, cloud, tuple(assignments.items()), tuple(counts.items()), hold)


def _scale(tokens: list[Token]) -> Scale:
    usage = USAGE["scale"]
    if not tokens:
        raise ParseError("`scale` needs a run id", None, None, usage)
    run = _run(tokens[0].text, "scale")
    changes: dict[str, int] = {}
    for token in tokens[1:]:
        node, eq, delta = token.text.partition("=")
        if not eq or not _DELTA.match(delta):
            raise ParseError(
                f"`{token.text}`: expected NODE=+N or NODE=-N", token.text, None, usage
            )
        changes[_name(node, "node", usage)] = int(delta)
    if not changes:
        raise ParseError("`scale` needs at least one NODE=+N or NODE=-N", None, None, usage)
    return Scale(run, tuple(changes.items()))
