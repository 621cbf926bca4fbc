"""``Panel(url=…, token=…)`` against a real ``slipstream serve`` on loopback: a wrong token
and an unreachable server are said in the panel and start nothing, the kernel goes on; with
a good token one run is planned, deployed, followed, explored and destroyed through the
REST API (one deployment for the module)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from notebooks.panel import Panel
from notebooks.render import text_of
from tests.notebooks.conftest import outputs, run_notebook
from tests.served import Served, serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = serve(tmp_path_factory.mktemp("remote") / "home", tls=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(served: Served) -> str:
    return served.user("alice", admin=True)


def runs_of(served: Served, token: str) -> list[dict[str, str]]:
    answer = served.call("GET", "/api/v1/runs", token)
    assert answer.status == 200, answer.raw
    return list(answer.json["runs"])


def served_params(served: Served, token: str, run_id: str) -> dict[str, str]:
    answer = served.call("GET", f"/api/v1/runs/{run_id}/params", token)
    assert answer.status == 200, answer.raw
    return dict(answer.json["params"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_wrong_token_is_said_and_starts_nothing(served: Served, token: str) -> None:
    panel = Panel(url=served.url, token="ss_not-a-real-token", root=Path.cwd())
    for part in (panel.deploy, panel.explorer):
        text = text_of(part.message.value)
        assert text.startswith("cannot use the service: the service refused the token: ")
    assert panel.backend is None
    panel.deploy.recipe.value = "cluster"
    assert panel.deploy.deploy_button.disabled and panel.deploy.plan_button.disabled
    panel.deploy.deploy_button.click()
    assert runs_of(served, token) == []


def test_an_unreachable_server_is_said(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    panel = Panel(url=url, token="ss_whatever")
    text = text_of(panel.deploy.message.value)
    assert text.startswith(f"cannot use the service: cannot reach {url}: ")
    assert "refused" in text.lower()
    assert panel.explorer.error and panel.explorer.runs == []
    assert text_of(Panel(url=url).deploy.message.value) == (
        "cannot use the service: a remote service needs both url= and token="
    )


def test_the_kernel_stays_responsive_after_a_refusal(
    served: Served, tmp_path: Path, token: str
) -> None:
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        cells=[
            nbformat.v4.new_code_cell(
                "from notebooks import Panel\n"
                f"panel = Panel(url={served.url!r}, token='ss_wrong')\n"
                "panel.deploy.deploy_button.click()\n"
                "print(panel.deploy.summary()['message'])"
            ),
            nbformat.v4.new_code_cell(
                f"dead = Panel(url='http://127.0.0.1:{closed_port()}', token='x')\n"
                "print(dead.explorer.summary()['message'].splitlines()[0][:40])"
            ),
            nbformat.v4.new_code_cell("print('still here', 6 * 7)"),
        ],
    )
    path = tmp_path / "refused.ipynb"
    nbformat.write(nb, path)
    ran = run_notebook(path, tmp_path / "client-home", timeout=120)
    assert "the service refused the token" in outputs(ran, 0)
    assert outputs(ran, 1).strip() == "cannot use the service: cannot reach htt"
    assert outputs(ran, 2).strip() == "still here 42"
    assert runs_of(served, token) == []


def test_a_run_through_the_rest_api(served: Served, token: str) -> None:
    panel = Panel(url=served.url, token=token, root=Path.cwd())
    deploy, explorer = panel.deploy, panel.explorer
    assert not deploy.error and explorer.runs == []
    deploy.recipe.value = "cluster"
    deploy.counts["worker"].value = 1
    assert deploy.set_input("problem_size", "300")
    # A cloud the service does not know: the service refuses, nothing starts.
    deploy.cloud_pickers["worker"].options = ["local", "mars"]
    deploy.cloud_pickers["worker"].value = "mars"
    deploy.deploy_button.click()
    assert "mars" in text_of(deploy.message.value) and deploy.error
    assert runs_of(served, token) == []
    deploy.cloud_pickers["worker"].value = "local"
    deploy.plan_button.click()
    assert text_of(deploy.message.value) == "planned: nothing was changed"
    assert "<td style='padding:2px 8px'>local</td><td style='padding:2px 8px'>2</td>" in (
        deploy.plan_view.value
    )
    deploy.deploy_button.click()
    doc = deploy.wait(timeout=600)
    summary = deploy.summary()
    assert doc["state"] == summary["state"] == "Ready", summary
    assert [i["name"] for i in summary["instances"]] == ["head.1", "worker.1"]
    assert summary["instances"][0]["status"] == f"answer {300 * 301 * 601 // 6} from 1 workers"
    assert [r["id"] for r in runs_of(served, token)] == [summary["run"]]

    explorer.cloud_filter.value = "local"
    explorer.refresh()
    assert explorer.run_ids == [summary["run"]]
    explorer.select(summary["run"])
    explorer.wait(timeout=120)
    shown = explorer.summary()
    assert shown["state"] == "Ready" and shown["timeline"] and shown["reports"] == 2
    explorer.scale_node.value = "worker"
    explorer.scale_count.value = 1  # what it has: refused, nothing changes
    explorer.scale_button.click()
    explorer.confirm_button.click()
    assert "already has 1 instance(s)" in text_of(explorer.message.value)
    explorer.scale_count.value = 2
    explorer.scale_button.click()
    explorer.confirm_button.click()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        params = served_params(served, token, summary["run"])
        if params.get("worker:ids") == "1,2" and runs_of(served, token)[0]["state"] == "Ready":
            break
        time.sleep(0.5)
    assert params.get("worker:ids") == "1,2", params
    assert params.get("head.1:statecustom", "").startswith("answer "), params
    explorer.destroy_button.click()
    explorer.cancel_button.click()  # asked, then cancelled: nothing happens
    assert runs_of(served, token)[0]["state"] == "Ready"
    explorer.destroy_button.click()
    explorer.confirm_button.click()
    assert explorer.wait(timeout=600)["state"] == "Done"
    assert runs_of(served, token)[0]["state"] == "Done"
    panel.close()
