"""The example notebooks run headless (nbclient, a real kernel) against the ``local`` cloud:
``deploy.ipynb`` deploys ``cluster`` from the panel's widgets and follows it to Ready;
``explore.ipynb`` finds the run, shows its timeline and reports, and destroys it. One
deployment for the module; the assertions read the cells' outputs and the widgets' state.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from engine.service import Service
from tests.e2e import marked_processes
from tests.notebooks.conftest import (
    NOTEBOOKS,
    code_cells,
    destroy_left,
    outputs,
    run_notebook,
    widget_models,
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("nbhome") / "home"
    yield folder
    destroy_left(folder)


@pytest.fixture(scope="module")
def deployed(home: Path) -> Any:
    return run_notebook(NOTEBOOKS / "deploy.ipynb", home)


def last_value(nb: Any, index: int) -> Any:
    """The Python value a cell ended with (its text/plain, read back)."""
    results = [o for o in code_cells(nb)[index].outputs if o.output_type == "execute_result"]
    assert results, outputs(nb, index)
    return ast.literal_eval(results[-1].data["text/plain"])


def test_deploy_notebook_reaches_ready_from_the_widgets(deployed: Any, home: Path) -> None:
    assert sorted(ast.literal_eval(outputs(deployed, 1))[0]) == ["problem_size"]
    assert ast.literal_eval(outputs(deployed, 1))[1] == ["head", "worker"]
    refused, value = [line for line in outputs(deployed, 2).splitlines() if line]
    assert refused == "input `problem_size` expects a whole number, got `a lot`"
    assert value == "2000"
    assert outputs(deployed, 3).strip() == "planned: nothing was changed"
    assert outputs(deployed, 4).strip().startswith("run ")
    summary = last_value(deployed, 5)
    assert summary["state"] == "Ready" and summary["abort"] is None and not summary["error"]
    names = [(i["name"], i["cloud"], i["address"]) for i in summary["instances"]]
    assert names == [("head.1", "local", "127.0.0.1"), ("worker.1", "local", "127.0.0.1")]
    head = summary["instances"][0]
    # Its status line: the sum of the squares of 1..2000, from the one worker.
    assert head["status"] == f"answer {2000 * 2001 * 4001 // 6} from 1 workers"
    runs = Service(home, None).store.list_runs()
    assert [(r.id, r.state) for r in runs] == [(summary["run"], "Ready")]


def test_deploy_notebook_saves_the_widgets_state(deployed: Any) -> None:
    models = widget_models(deployed)
    assert any(m.get("value") == "cluster" and "placeholder" in m for m in models)
    assert any(m.get("description") == "problem_size" and m.get("value") == 2000 for m in models)
    views = [m["value"] for m in models if "ss-instances" in str(m.get("value", ""))]
    assert views and "Ready" in views[0] and "worker.1" in views[0]
    charts = [m["value"] for m in models if "ss-timeline" in str(m.get("value", ""))]
    assert charts and 'data-state="Executing"' in charts[0]


def test_explore_notebook_shows_the_run_and_destroys_it(deployed: Any, home: Path) -> None:
    run_id = last_value(deployed, 5)["run"]
    explored = run_notebook(NOTEBOOKS / "explore.ipynb", home)
    assert last_value(explored, 1) == [(run_id, "cluster", "Ready")]
    shown = last_value(explored, 2)
    assert shown["selected"] == run_id and shown["state"] == "Ready"
    assert shown["timeline"] and shown["reports"] == 2
    (asks,) = [line for line in outputs(explored, 4).splitlines() if line.startswith("asks:")]
    assert f"Destroy run {run_id}" in asks
    after = last_value(explored, 4)
    assert "the run is now Done" in outputs(explored, 4)
    assert after["runs"] == [(run_id, "cluster", "Done")] and after["selected"] == run_id
    assert after["state"] == "Done" and not after["error"]
    assert Service(home, None).store.get_run(run_id).state == "Done"  # type: ignore[union-attr]
    assert marked_processes(run_id) == []
