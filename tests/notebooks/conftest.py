"""Fixtures for the notebook front door: a Jupyter of the tests' own (a ``python3`` kernel
that is this venv's Python, in a temporary ``JUPYTER_PATH``), notebooks run headless with
nbclient, and recipes declaring an input of every type.

Example (in a test)::

    nb = run_notebook(REPO / "notebooks" / "deploy.ipynb", home)
    outputs(nb, 3)  # the text of cell 3's outputs
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.e2e import REPO, cli

NOTEBOOKS = REPO / "notebooks"
#: A deployment whose inputs have every declared type (its node is never deployed).
PROBE_RECIPES = {
    "probe.yaml": (
        "kind: component\nname: probe\nimage: debian-12\n"
        "inputs:\n  workers: {type: int, default: 2}\n  fast: {type: bool, default: false}\n"
        "  colour: {type: enum, choices: [red, green], default: red}\n"
        "  password: {sensitive: true}\n  region: {default: eu}\n  label: {}\n"
    ),
    "probes.yaml": (
        "kind: deployment\nname: probes\n"
        "inputs:\n"
        "  workers: {type: int, default: 2, description: how many workers}\n"
        "  fast: {type: bool, default: false, description: skip the checks}\n"
        "  colour: {type: enum, choices: [red, green], default: red}\n"
        "  password: {sensitive: true, description: the admin password}\n"
        "  region: {default: eu, locked: true, description: where it runs}\n"
        "  label: {description: a free text}\n"
        "nodes:\n  p:\n    component: probe\n    inputs:\n"
        "      workers: {from: input:workers}\n      fast: {from: input:fast}\n"
        "      colour: {from: input:colour}\n      password: {from: input:password}\n"
        "      region: {from: input:region}\n      label: {from: input:label}\n"
    ),
}


@pytest.fixture(scope="session", autouse=True)
def jupyter_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Jupyter data folder whose ``python3`` kernel is this venv's Python; every Jupyter
    and IPython folder in the temporary directory, none in the user's home."""
    top = tmp_path_factory.mktemp("jupyter")
    spec = top / "data" / "kernels" / "python3"
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (slipstream tests)",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel))
    values = {
        "JUPYTER_PATH": str(top / "data"),
        "JUPYTER_DATA_DIR": str(top / "data"),
        "JUPYTER_CONFIG_DIR": str(top / "config"),
        "JUPYTER_RUNTIME_DIR": str(top / "runtime"),
        "IPYTHONDIR": str(top / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        for name in ("SLIPSTREAM_URL", "SLIPSTREAM_TOKEN", "SLIPSTREAM_DATABASE_URL"):
            patch.delenv(name, raising=False)
        yield top


def run_notebook(path: Path, home: Path, timeout: int = 900) -> Any:
    """Execute a notebook headless in a fresh ``python3`` kernel whose service home is
    ``home`` (the kernel starts in the notebook's folder); the executed notebook, widget
    state included. A failing cell raises nbclient's CellExecutionError."""
    nb = nbformat.read(path, as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLIPSTREAM_HOME", str(home))
        patch.setenv("SLIPSTREAM_USER", "tester")
        client = NotebookClient(
            nb,
            kernel_name="python3",
            timeout=timeout,
            resources={"metadata": {"path": str(path.parent)}},
            store_widget_state=True,
        )
        client.execute()
    return nb


def code_cells(nb: Any) -> list[Any]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def outputs(nb: Any, index: int) -> str:
    """Every text output of code cell ``index`` (from 0), joined."""
    texts = []
    for out in code_cells(nb)[index].outputs:
        if out.output_type == "stream":
            texts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            texts.append(out.data.get("text/plain", ""))
        elif out.output_type == "error":
            texts.append("\n".join(out.traceback))
    return "\n".join(texts)


def widget_models(nb: Any) -> list[dict[str, Any]]:
    """The state of every widget model the notebook displayed (saved by nbclient)."""
    saved = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return [model["state"] for model in saved.get("state", {}).values()]


def destroy_left(home: Path) -> None:
    """Destroy every run a failed test left in ``home`` (by the embedded CLI)."""
    runs = home / "runs"
    for run in sorted(runs.iterdir()) if runs.is_dir() else []:
        cli(home, "destroy", run.name, timeout=300)


@pytest.fixture
def probe_root(tmp_path: Path) -> Path:
    root = tmp_path / "recipes"
    root.mkdir()
    for name, text in PROBE_RECIPES.items():
        (root / name).write_text(text)
    return root


__all__ = ["NOTEBOOKS", "code_cells", "destroy_left", "outputs", "run_notebook", "widget_models"]
