"""Deploy-time overrides from the command line, chat or API: inputs, clouds, multiplicity.

Example:
    >>> o = Overrides.parse(inputs=["version=1.2"], clouds=["web=aws-eu,os-lab"],
    ...                     multiplicity=["web=4"])
    >>> o.inputs["version"], o.clouds["web"], o.multiplicity["web"]
    ('1.2', ('aws-eu', 'os-lab'), 4)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.errors import Mark, Problem, RecipeInvalid
from engine.recipes.schema import MAX_MULTIPLICITY, NAME_RE, PARAM_RE, PATTERN_HELP


def option_mark(option: str, text: str) -> Mark:
    """A pseudo-location naming the command-line option a problem comes from."""
    return Mark(f"{option} {text}", 0, 0)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Values that replace what the deployment recipe says, for one run."""

    inputs: Mapping[str, str] = field(default_factory=dict)
    clouds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    multiplicity: Mapping[str, int] = field(default_factory=dict)
    # Harmless oddities worth telling the user (a key given twice: the last value wins).
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(
        cls,
        inputs: Iterable[str] = (),
        clouds: Iterable[str] = (),
        multiplicity: Iterable[str] = (),
    ) -> Overrides:
        """Parse ``key=value`` texts; every malformed one is reported at once."""
        problems: list[Problem] = []
        warnings: list[str] = []
        parsed_inputs = _pairs("--input", inputs, PARAM_RE, problems, warnings)
        parsed_clouds: dict[str, tuple[str, ...]] = {}
        for node, value in _pairs("--cloud", clouds, NAME_RE, problems, warnings).items():
            names = tuple(v.strip() for v in value.split(","))
            bad = [n for n in names if not re.match(NAME_RE, n)]
            if bad:
                problems.append(
                    Problem(
                        option_mark("--cloud", f"{node}={value}"),
                        f"bad cloud name `{bad[0]}`: expected {PATTERN_HELP[NAME_RE]}",
                    )
                )
            else:
                parsed_clouds[node] = names
        parsed_mult: dict[str, int] = {}
        pairs = _pairs("--multiplicity", multiplicity, NAME_RE, problems, warnings)
        for node, value in pairs.items():
            if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) > MAX_MULTIPLICITY:
                problems.append(
                    Problem(
                        option_mark("--multiplicity", f"{node}={value}"),
                        f"multiplicity must be a whole number from 0 to {MAX_MULTIPLICITY}, "
                        f"got `{value}`",
                    )
                )
            else:
                parsed_mult[node] = int(value)
        if problems:
            raise RecipeInvalid(problems)
        return cls(parsed_inputs, parsed_clouds, parsed_mult, tuple(warnings))


def _pairs(
    option: str, items: Iterable[str], key_re: str, problems: list[Problem], warnings: list[str]
) -> dict[str, str]:
    """``key=value`` items as a dict; a key given twice keeps its last value, with a warning.

    >>> warnings: list[str] = []
    >>> _pairs("--input", ["v=1", "v=2"], PARAM_RE, [], warnings), warnings
    ({'v': '2'}, ['`--input v` is given twice: the last one is used'])
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            problems.append(Problem(option_mark(option, item), "expected KEY=VALUE"))
        elif not re.match(key_re, key):
            problems.append(
                Problem(
                    option_mark(option, item), f"bad name `{key}`: expected {PATTERN_HELP[key_re]}"
                )
            )
        else:
            if key in out:
                # Not the value: it may be a secret (read from a file, say).
                warnings.append(f"`{option} {key}` is given twice: the last one is used")
            out[key] = value
    return out
