"""The clouds configuration (``clouds.yaml``): named clouds, each of a mapped type.

It lives on the server side, never in recipes; with no file there is one cloud,
``local``. Each entry is checked against its mapping's ``settings_schema``.

Example:
    >>> cfg = CloudsConfig.default()
    >>> cfg.get("local").type
    'local'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from engine.errors import Problem, RecipeInvalid
from engine.recipes.schema import NAME_RE
from engine.recipes.structure import check
from engine.recipes.yamlsrc import Located, parse_file, parse_text
from providers_map import NO_PROVIDER, cloud_types, mapping_for


@dataclass(frozen=True, slots=True)
class Cloud:
    """One configured cloud: its name, mapping type and settings."""

    name: str
    type: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CloudsConfig:
    """Every configured cloud by name, ``local`` always among them."""

    clouds: Mapping[str, Cloud]
    source: str = "<built-in>"

    @classmethod
    def default(cls) -> CloudsConfig:
        return cls({"local": Cloud("local", "local", {})})

    def get(self, name: str) -> Cloud:
        return self.clouds[name]

    def names(self) -> list[str]:
        return sorted(self.clouds)


@cache
def _top_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["clouds"],
        "additionalProperties": False,
        "properties": {
            "clouds": {
                "type": "object",
                "propertyNames": {"pattern": NAME_RE},
                "additionalProperties": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"enum": cloud_types()}},
                },
            }
        },
    }


def load_clouds(path: Path | None) -> CloudsConfig:
    """Load a clouds file (None: the built-in default); every problem at once. A file with
    nothing in it (or only comments) configures no cloud besides ``local``."""
    if path is None:
        return CloudsConfig.default()
    doc = parse_file(path, empty_ok=True)
    if doc is None:
        return CloudsConfig(CloudsConfig.default().clouds, str(path))
    return parse_clouds(doc)


def load_home_clouds(home: Path, path: Path | None = None) -> CloudsConfig:
    """``path``, else ``clouds.yaml`` in the service home when present, else the default."""
    default = home / "clouds.yaml"
    return load_clouds(path or (default if default.exists() else None))


def parse_clouds_text(text: str, name: str = "clouds.yaml") -> CloudsConfig:
    """Like :func:`load_clouds` for text in memory (tests, the REST API)."""
    return parse_clouds(parse_text(text, name))


def parse_clouds(doc: Located) -> CloudsConfig:
    """Check and load a parsed clouds file; :class:`RecipeInvalid` lists every problem."""
    answers = _without_provider(doc)
    answered = {p.mark for p in answers}
    problems = [p for p in check(doc, _top_schema()) if p.mark not in answered] + answers
    if problems:
        raise RecipeInvalid(sorted(problems, key=lambda p: p.mark))
    entries: dict[str, Located] = doc.value["clouds"].value
    clouds: dict[str, Cloud] = {"local": Cloud("local", "local", {})}
    local = entries.get("local")
    if local is not None and local.plain() != {"type": "local"}:
        problems.append(
            Problem(
                doc.value["clouds"].key_mark("local"),
                "clouds.local: `local` is the embedded cloud (this host) and cannot be "
                "redefined; give this cloud another name",
            )
        )
        raise RecipeInvalid(problems)
    for name, entry in entries.items():
        mapping = mapping_for(str(entry.value["type"].value))
        problems.extend(check(entry, _settings_schema(mapping.type)))
        settings = {k: v.plain() for k, v in entry.value.items() if k != "type"}
        clouds[name] = Cloud(name, mapping.type, settings)
    if problems:
        raise RecipeInvalid(problems)
    return CloudsConfig(clouds, doc.mark.file)


def _without_provider(doc: Located) -> list[Problem]:
    """A clear answer for each cloud of a type SlipStream knew but no provider reaches."""
    clouds = doc.get("clouds")
    entries = clouds.value if clouds is not None and isinstance(clouds.value, dict) else {}
    answers: list[Problem] = []
    for name, entry in entries.items():
        kind = entry.get("type")
        if kind is not None and isinstance(kind.value, str) and kind.value in NO_PROVIDER:
            answers.append(
                Problem(
                    kind.mark,
                    f"clouds.{name}.type: type `{kind.value}` has no maintained Terraform "
                    f"provider; {NO_PROVIDER[kind.value]} (mapped types: "
                    f"{', '.join(cloud_types())})",
                )
            )
    return answers


@cache
def _settings_schema(cloud_type: str) -> dict[str, Any]:
    """A mapping's settings schema, with the ``type`` key every entry has."""
    schema = dict(mapping_for(cloud_type).settings_schema)
    schema["properties"] = {**schema.get("properties", {}), "type": {"type": "string"}}
    return schema
