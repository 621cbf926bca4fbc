"""Deploy-time overrides from the command line, chat or API: inputs, clouds, multiplicity.

``--input node:param=value`` sets one node's input (SlipStream's ``ss-execute --parameters
node:param=value``; ``node:multiplicity`` and ``node:cloudservice`` set those, as there);
``--input name=value`` a deployment input.

Example:
    >>> o = Overrides.parse(inputs=["version=1.2", "web:greeting=hi"],
    ...                     clouds=["web=aws-eu,os-lab"], multiplicity=["web=4"])
    >>> o.inputs["version"], o.node_inputs["web"], o.clouds["web"], o.multiplicity["web"]
    ('1.2', {'greeting': 'hi'}, ('aws-eu', 'os-lab'), 4)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.errors import Mark, Problem, RecipeInvalid
from engine.recipes.schema import (
    MAX_MULTIPLICITY,
    NAME_RE,
    PARAM_RE,
    PATTERN_HELP,
    RECIPE_NAME_RE,
)


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
    node_inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # `deploy --scalable`: the run accepts scale actions in Ready whatever the recipe says.
    scalable: bool = False

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
        inputs = list(inputs)
        per_node = [i for i in inputs if ":" in i.partition("=")[0]]
        parsed_inputs = _pairs(
            "--input", [i for i in inputs if i not in per_node], PARAM_RE, problems, warnings
        )
        node_inputs = _node_inputs(per_node, problems, warnings)
        parsed_clouds: dict[str, tuple[str, ...]] = {}
        for node, value in _pairs("--cloud", clouds, RECIPE_NAME_RE, problems, warnings).items():
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
        pairs = _pairs("--multiplicity", multiplicity, RECIPE_NAME_RE, problems, warnings)
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
        # ss-execute --parameters took node:multiplicity and node:cloudservice too
        # (SlipStreamServer RunListResource.overrideNodes).
        for node, values in node_inputs.items():
            if "multiplicity" in values:
                count = values.pop("multiplicity")
                if re.fullmatch(r"[0-9]{1,5}", count):
                    parsed_mult.setdefault(node, int(count))
                else:
                    problems.append(
                        Problem(
                            option_mark("--input", f"{node}:multiplicity={count}"),
                            f"multiplicity must be a whole number >= 0, got `{count}`",
                        )
                    )
            if "cloudservice" in values:
                parsed_clouds.setdefault(node, (values.pop("cloudservice"),))
        node_inputs = {node: values for node, values in node_inputs.items() if values}
        if problems:
            raise RecipeInvalid(problems)
        return cls(parsed_inputs, parsed_clouds, parsed_mult, tuple(warnings), node_inputs)


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


def _node_inputs(
    items: list[str], problems: list[Problem], warnings: list[str]
) -> dict[str, dict[str, str]]:
    """``node:param=value`` items, by node then input name (the last of a repeat wins).

    >>> _node_inputs(["web:greeting=hi", "Torque_master:slots=4"], [], [])
    {'web': {'greeting': 'hi'}, 'Torque_master': {'slots': '4'}}
    """
    found: dict[str, dict[str, str]] = {}
    for item in items:
        key, _, value = item.partition("=")
        node, _, name = key.strip().partition(":")
        bad = [(p, r) for p, r in ((node, RECIPE_NAME_RE), (name, PARAM_RE)) if not re.match(r, p)]
        if bad:
            part, pattern = bad[0]
            problems.append(
                Problem(
                    option_mark("--input", item),
                    f"bad name `{part}`: expected {PATTERN_HELP[pattern]}",
                )
            )
            continue
        if name in found.get(node, {}):
            warnings.append(
                f"`--input {node}:{name}` is given twice: the last value (`{value}`) is used"
            )
        found.setdefault(node, {})[name] = value
    return found
