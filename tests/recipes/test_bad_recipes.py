"""The bad-recipe corpus: every class of recipe mistake, and the exact problems it must give.

Each case is a folder ``tests/recipes/bad/<case>/``; a new case is just a new folder.

* The folder is the **recipe root** of the case: the file under test and any helper
  components it needs (found by name, ``web`` in ``web.yaml`` anywhere below the folder,
  then in the shipped ``templates/``). Messages about helpers show paths relative to it.
* The **file under test** is ``deployment.yaml`` when the folder has one, else
  ``component.yaml``; ``case.yaml`` may name another one (``file: a.yaml``).
* ``expected.txt`` holds the exact problem lines, ``file:line:column: message`` (or
  ``--option text: message`` for deploy-time overrides), one per line, in the order the
  loader sorts problems (file, line, column). Blank lines and lines starting with ``#``
  are comments. An expected.txt with no problem line is a positive control: the recipe
  must load (and a deployment must compile).
* ``case.yaml`` (optional) describes how to load the file under test::

      file: a.yaml                # the file under test (default: see above)
      inputs: [version=2]         # --input overrides, as given to Overrides.parse
      clouds: [web=aws-eu]        # --cloud overrides
      multiplicity: [web=4]       # --multiplicity overrides
      require_values: true        # every deployment input needs a value

  ``case.yaml`` sits under the recipe root too, so no case may use a component ``case``.

Deployments are loaded through ``RecipeLoader.deployment`` (with the case's overrides,
from inside the case folder so the file is named as a user would type it); when the case
has no overrides, ``RecipeLoader.validate_file`` must report the very same problems.
Components are checked with ``validate_file``. Every clouds configuration is the default
one (only ``local``). The size cap is tested at run time (no 1 MiB file in Git).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.compile.compiler import compile_deployment
from engine.errors import Problem, RecipeInvalid
from engine.recipes.clouds import CloudsConfig
from engine.recipes.loader import RecipeLoader
from engine.recipes.model import Deployment
from engine.recipes.overrides import Overrides
from engine.recipes.yamlsrc import MAX_FILE_BYTES

CORPUS = Path(__file__).parent / "bad"
CASE_KEYS = {"file", "inputs", "clouds", "multiplicity", "require_values"}
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def _meta(case_dir: Path) -> dict[str, Any]:
    path = case_dir / "case.yaml"
    meta = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}
    assert isinstance(meta, dict), f"{path}: expected a mapping"
    unknown = set(meta) - CASE_KEYS
    assert not unknown, f"{path}: unknown keys {sorted(unknown)}"
    return meta


def _file_under_test(case_dir: Path, meta: dict[str, Any]) -> str:
    if "file" in meta:
        return str(meta["file"])
    return "deployment.yaml" if (case_dir / "deployment.yaml").exists() else "component.yaml"


def _expected(case_dir: Path) -> list[str]:
    path = case_dir / "expected.txt"
    assert path.exists(), f"{path} is missing (write the expected problems, or a comment)"
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = [line for line in lines if line.strip() and not line.startswith("#")]
    assert len(set(expected)) == len(expected), f"{path}: a problem is listed twice"
    return expected


def _has_overrides(meta: dict[str, Any]) -> bool:
    return any(meta.get(k) for k in ("inputs", "clouds", "multiplicity", "require_values"))


def _is_deployment(file: str) -> bool:
    return Path(file).name == "deployment.yaml"


def _loader(case_dir: Path) -> RecipeLoader:
    return RecipeLoader(root=case_dir, clouds=CloudsConfig.default())


def _load_deployment(case_dir: Path, meta: dict[str, Any], file: str) -> Deployment:
    """Overrides and deployment as the CLI would do them; raises RecipeInvalid."""
    overrides = Overrides.parse(
        inputs=meta.get("inputs", []),
        clouds=meta.get("clouds", []),
        multiplicity=meta.get("multiplicity", []),
    )
    return _loader(case_dir).deployment(
        Path(file), overrides, require_values=bool(meta.get("require_values", False))
    )


def _lines(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


@pytest.mark.parametrize("case", CASES)
def test_case_reports_exactly_the_expected_problems(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_dir = CORPUS / case
    meta = _meta(case_dir)
    file = _file_under_test(case_dir, meta)
    expected = _expected(case_dir)
    if _is_deployment(file):
        monkeypatch.chdir(case_dir)
        try:
            _load_deployment(case_dir, meta, file)
        except RecipeInvalid as err:
            actual = _lines(err.problems)
        else:
            actual = []
    else:
        actual = _lines(_loader(case_dir).validate_file(case_dir / file, display=file))
    assert actual == expected


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in CASES
        if _is_deployment(_file_under_test(CORPUS / c, _meta(CORPUS / c)))
        and not _has_overrides(_meta(CORPUS / c))
    ],
)
def test_validate_file_agrees_with_deployment_loading(case: str) -> None:
    case_dir = CORPUS / case
    file = _file_under_test(case_dir, _meta(case_dir))
    problems = _loader(case_dir).validate_file(case_dir / file, display=file)
    assert _lines(problems) == _expected(case_dir)


@pytest.mark.parametrize(
    "case", [c for c in CASES if _is_deployment(_file_under_test(CORPUS / c, _meta(CORPUS / c)))]
)
def test_bad_deployment_never_reaches_the_compiler(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a loaded Deployment can be compiled; a bad one must raise, never half-load."""
    case_dir = CORPUS / case
    meta = _meta(case_dir)
    file = _file_under_test(case_dir, meta)
    monkeypatch.chdir(case_dir)
    if not _expected(case_dir):
        deployment = _load_deployment(case_dir, meta, file)
        assert isinstance(deployment, Deployment)
        assert list(compile_deployment(deployment, CloudsConfig.default())) == ["local"]
        return
    with pytest.raises(RecipeInvalid) as caught:
        _load_deployment(case_dir, meta, file)
    assert caught.value.problems, "RecipeInvalid must carry at least one problem"


# Error classes the corpus must always cover (case folder per class); more cases may exist.
REQUIRED = {
    "yaml-syntax",
    "duplicate-key",
    "unknown-key-top",
    "unknown-key-node",
    "unknown-key-input-spec",
    "wrong-type-multiplicity",
    "wrong-type-ports",
    "bad-name-component",
    "bad-name-node",
    "bad-name-parameter",
    "unknown-component",
    "unknown-node-in-mapping",
    "unknown-output",
    "unknown-deployment-input",
    "unmapped-input",
    "input-mapping-loop",
    "node-name-case-clash",
    "node-input-overrides",
    "inheritance-cycle",
    "negative-multiplicity",
    "unknown-cloud",
    "locked-input-override",
    "alias-bomb",
    "literal-wrong-type",
    "enum-without-choices",
    "many-structural",
    "many-semantic",
    "valid-deployment",
}


def test_corpus_covers_every_required_class_and_has_one_positive_control() -> None:
    assert sorted(REQUIRED - set(CASES)) == []
    assert [c for c in CASES if not _expected(CORPUS / c)] == ["valid-deployment"]
    for case in ("many-structural", "many-semantic"):
        assert len(_expected(CORPUS / case)) >= 5, f"{case} must show many problems at once"


# -- the size cap (generated at run time: no 1 MiB file in the repository) ----------------

_HEADER = "kind: component\nname: big\nimage: ubuntu-22.04\n"


def _write_sized(path: Path, size: int) -> None:
    """A valid component of exactly ``size`` bytes, padded with a comment."""
    padding = size - len(_HEADER) - 2
    path.write_text(_HEADER + "#" + "x" * padding + "\n", encoding="utf-8")
    assert path.stat().st_size == size


def test_file_over_the_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    _write_sized(path, MAX_FILE_BYTES + 1)
    problems = _loader(tmp_path).validate_file(path, display="big.yaml")
    assert _lines(problems) == [
        f"big.yaml: file is {MAX_FILE_BYTES + 1} bytes, over the {MAX_FILE_BYTES}-byte limit"
    ]


def test_file_at_the_size_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    _write_sized(path, MAX_FILE_BYTES)
    assert _loader(tmp_path).validate_file(path, display="big.yaml") == []


def test_helper_component_over_the_size_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "components").mkdir()
    _write_sized(tmp_path / "components" / "big.yaml", MAX_FILE_BYTES + 1)
    (tmp_path / "deployment.yaml").write_text(
        "kind: deployment\nname: shop\nnodes:\n  web:\n    component: big\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeInvalid) as caught:
        _loader(tmp_path).deployment(Path("deployment.yaml"))
    assert _lines(caught.value.problems) == [
        f"components/big.yaml: file is {MAX_FILE_BYTES + 1} bytes, "
        f"over the {MAX_FILE_BYTES}-byte limit"
    ]
