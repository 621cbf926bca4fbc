"""Bad input in the deploy panel: a clear message in the panel, every problem at once, and
nothing started (no run stored). Widgets are made from the declared input types. In
process, on the embedded backend of a temporary home; nothing here deploys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.recipes.clouds import CloudsConfig
from notebooks.backend import BackendError, DeployRequest
from notebooks.deploy_panel import DeployPanel
from notebooks.embedded import EmbeddedBackend
from notebooks.render import text_of


@pytest.fixture
def panel(tmp_path: Path, probe_root: Path) -> Iterator[DeployPanel]:
    backend = EmbeddedBackend.open(tmp_path / "home", probe_root)
    panel = DeployPanel(backend, probe_root)
    panel.recipe.value = "probes"  # one of the names offered: loads at once
    yield panel
    backend.close()


def nothing_started(panel: DeployPanel) -> None:
    assert isinstance(panel.backend, EmbeddedBackend)
    assert panel.backend.service.store.list_runs() == []
    assert panel.run_id == "" and panel.view.state == ""


def shown(panel: DeployPanel) -> str:
    assert panel.error, f"no error shown: {panel.message.value}"
    return text_of(panel.message.value)


def test_widgets_follow_the_declared_types(panel: DeployPanel) -> None:
    kinds = {name: type(f.widget).__name__ for name, f in panel.fields.items()}
    assert kinds == {
        "workers": "BoundedIntText",
        "fast": "Checkbox",
        "colour": "Dropdown",
        "password": "Password",
        "region": "Text",
        "label": "Text",
    }
    assert panel.fields["region"].widget.disabled  # locked
    assert not any(f.widget.disabled for n, f in panel.fields.items() if n != "region")
    assert panel.fields["workers"].widget.tooltip == "how many workers"
    assert panel.fields["password"].widget.tooltip == "the admin password"
    assert panel.fields["colour"].widget.options == ("red", "green")
    assert panel.fields["workers"].widget.value == 2
    assert panel.fields["fast"].widget.value is False
    assert list(panel.cloud_pickers) == ["p"]
    assert panel.cloud_pickers["p"].options == (("local", "local"),)


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("workers", "many", "input `workers` expects a whole number, got `many`"),
        ("fast", "maybe", "input `fast` expects true or false, got `maybe`"),
        ("colour", "blue", "input `colour` expects one of red, green, got `blue`"),
        ("region", "us", "input `region` is locked by the recipe: it stays `eu`"),
        ("nope", "1", "unknown input `nope`"),
    ],
)
def test_a_value_that_does_not_fit_is_refused(
    panel: DeployPanel, name: str, text: str, why: str
) -> None:
    before = {n: f.widget.value for n, f in panel.fields.items()}
    assert panel.set_input(name, text) is False
    assert shown(panel) == why
    assert {n: f.widget.value for n, f in panel.fields.items()} == before
    nothing_started(panel)


def test_deploy_lists_every_problem_and_starts_nothing(panel: DeployPanel) -> None:
    panel.fields["region"].widget.value = "us"  # a locked field changed behind the widget
    panel.fields["colour"].widget.value = None  # a dropdown with nothing picked
    panel.fields["workers"].widget.value = 5
    panel.deploy_button.click()
    assert shown(panel).splitlines() == [
        "nothing started:",
        "input `colour` needs one of red, green",
        "input `password` needs a value",
        "input `region` is locked by the recipe: it stays `eu`",
        "input `label` needs a value",
    ]
    panel.plan_button.click()
    assert "input `password` needs a value" in shown(panel)
    assert panel.plan_view.value == ""
    nothing_started(panel)


def test_good_values_make_a_request_with_what_changed(panel: DeployPanel) -> None:
    for name, text in [("workers", "007"), ("fast", "TRUE"), ("colour", "green")]:
        assert panel.set_input(name, text), panel.message.value
    assert panel.set_input("password", "hunter2-secret")
    assert panel.set_input("label", "demo")
    request = panel.request()
    assert request is not None
    assert request.inputs == {
        "workers": "7",
        "fast": "true",
        "colour": "green",
        "password": "hunter2-secret",
        "label": "demo",
    }
    assert "hunter2-secret" not in panel.message.value


def test_a_recipe_that_does_not_load_is_said(panel: DeployPanel, probe_root: Path) -> None:
    (probe_root / "broken.yaml").write_text("kind: deployment\nname: broken\nnodes: [1\n")
    panel.recipe.value = str(probe_root / "broken.yaml")
    panel.load_button.click()
    assert shown(panel).startswith(f"recipe `{probe_root / 'broken.yaml'}`:\n")
    assert "\nbroken.yaml:4:1: YAML syntax error" in shown(panel)  # file:line:column
    assert panel.deploy_button.disabled and panel.fields == {}
    panel.deploy_button.click()  # disabled in the browser; from code it still refuses
    assert shown(panel) == "load a recipe first"
    panel.recipe.value = "no-such-recipe"
    panel.load_button.click()
    assert "unknown deployment `no-such-recipe`" in shown(panel)
    nothing_started(panel)


class Recorder:
    """A backend that records what it is asked to deploy (the run is never followed far)."""

    where = "recorder"

    def __init__(self) -> None:
        self.requests: list[DeployRequest] = []

    def clouds(self) -> list[str]:
        return ["local"]

    def clouds_config(self) -> CloudsConfig:
        return CloudsConfig.default()

    def deploy(self, request: DeployRequest) -> str:
        self.requests.append(request)
        return "r1"

    def events(self, run_id: str, after: int = 0) -> list[dict[str, object]]:
        raise BackendError("gone")

    def run(self, run_id: str) -> dict[str, object]:
        raise BackendError("gone")


def test_a_secret_is_sent_then_cleared_from_its_widget(probe_root: Path) -> None:
    backend = Recorder()
    panel = DeployPanel(backend, probe_root)  # type: ignore[arg-type]
    panel.recipe.value = "probes"
    assert panel.set_input("password", "hunter2-secret") and panel.set_input("label", "x")
    panel.deploy_button.click()
    assert panel.follower is not None
    panel.follower.stop()
    assert backend.requests[0].inputs["password"] == "hunter2-secret"
    assert panel.fields["password"].widget.value == ""
    assert text_of(panel.message.value) == "run r1 started"


def test_clouds_come_from_the_home_and_a_spread_node_stays_spread(
    tmp_path: Path, probe_root: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "clouds.yaml").write_text("clouds:\n  aws-eu: {type: aws, region: eu-west-1}\n")
    (probe_root / "spread.yaml").write_text(
        "kind: deployment\nname: spread\nnodes:\n"
        "  p: {component: debian, multiplicity: 2, cloud: [local, aws-eu]}\n"
    )
    backend = EmbeddedBackend.open(home, probe_root)
    try:
        panel = DeployPanel(backend, probe_root)
        panel.recipe.value = "spread"
        assert not panel.error, panel.message.value
        picker = panel.cloud_pickers["p"]
        assert picker.value == "local,aws-eu"
        assert list(picker.options) == [
            ("local, aws-eu (round-robin)", "local,aws-eu"),
            ("aws-eu", "aws-eu"),
            ("local", "local"),
        ]
        request = panel.request()
        assert request is not None and request.clouds == {}  # as the recipe says
        picker.value = "local"
        request = panel.request()
        assert request is not None and request.clouds == {"p": "local"}
        panel.counts["p"].value = 1
        assert panel.request().multiplicity == {"p": 1}  # type: ignore[union-attr]
    finally:
        backend.close()
