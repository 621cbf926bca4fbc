"""The deploy panel: pick a recipe, a cloud per node and the inputs; Plan; Deploy and
follow the run live while the kernel stays free.

Nothing starts while any value is wrong: every problem is listed in the panel at once.

Example (not run as a doctest: it deploys)::

    panel = DeployPanel(EmbeddedBackend.open())
    panel.recipe.value = "cluster"
    panel.set_input("problem_size", "100")
    panel.deploy_button.click()
    panel.wait(timeout=300)["state"]  # 'Ready'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as w

import notebooks.render as render
from engine.errors import SlipstreamError
from engine.recipes.schema import MAX_MULTIPLICITY
from notebooks.backend import Backend, BackendError, DeployRequest
from notebooks.fields import InputField
from notebooks.follow import RunFollower
from notebooks.recipes import DeploymentForm, deployment_names, load_form
from notebooks.runview import RunView


class DeployPanel:
    """Widgets to deploy one recipe through a backend; ``widget`` is what to display."""

    def __init__(self, backend: Backend | None, root: Path | None = None, error: str = "") -> None:
        self.backend = backend
        self.root = root
        self.form: DeploymentForm | None = None
        self.fields: dict[str, InputField] = {}
        self.cloud_pickers: dict[str, w.Dropdown] = {}
        self.counts: dict[str, w.BoundedIntText] = {}
        self.run_id = ""
        self.follower: RunFollower | None = None
        self.recipe = w.Combobox(
            options=deployment_names(root),
            placeholder="a deployment name, or the path of its file",
            description="recipe",
            ensure_option=False,
            tooltip="a deployment under the recipe root or templates/, or a .yaml path",
        )
        self.load_button = w.Button(description="Load", tooltip="read the recipe's inputs")
        self.nodes_box = w.VBox()
        self.inputs_box = w.VBox()
        self.plan_button = w.Button(description="Plan", icon="list", disabled=True)
        self.deploy_button = w.Button(
            description="Deploy", icon="rocket", button_style="primary", disabled=True
        )
        self.message = w.HTML()
        self.plan_view = w.HTML()
        self.view = RunView()
        self.load_button.on_click(lambda _: self.load())
        self.recipe.observe(self._picked, names="value")
        self.plan_button.on_click(lambda _: self.plan())
        self.deploy_button.on_click(lambda _: self.deploy())
        where = f"<small>service: {render.e(backend.where)}</small>" if backend else ""
        self.widget = w.VBox(
            [
                w.HTML(f"<h3>Deploy</h3>{where}"),
                w.HBox([self.recipe, self.load_button]),
                w.HTML("<b>clouds</b>"),
                self.nodes_box,
                w.HTML("<b>inputs</b>"),
                self.inputs_box,
                w.HBox([self.plan_button, self.deploy_button]),
                self.message,
                self.plan_view,
                self.view.widget,
            ]
        )
        self.unusable = error or ("" if backend else "no service to deploy to")
        if self.unusable:
            self.say(self.unusable, error=True)

    # -- what the user sees ------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def say(self, text: str, error: bool = False) -> None:
        self.message.value = render.message(text, error)

    @property
    def error(self) -> str:
        """The text of the error shown now ('' when none), for scripts and tests."""
        return self.message.value if "ss-error" in self.message.value else ""

    def _picked(self, change: dict[str, Any]) -> None:
        if change["new"] in self.recipe.options:
            self.load()

    # -- the recipe ----------------------------------------------------------------------

    def load(self) -> None:
        """Read the picked recipe and make its cloud and input widgets."""
        ref = self.recipe.value.strip()
        self.plan_button.disabled = self.deploy_button.disabled = True
        self.nodes_box.children, self.inputs_box.children = (), ()
        self.form, self.fields, self.cloud_pickers, self.counts = None, {}, {}, {}
        if not ref:
            self.say("pick a recipe first", error=True)
            return
        try:
            config = self.backend.clouds_config() if self.backend else None
            self.form = load_form(ref, self.root, config)
            clouds = self.backend.clouds() if self.backend else ["local"]
        except (SlipstreamError, BackendError) as err:
            self.say(f"recipe `{ref}`:\n{err}", error=True)
            return
        for node in self.form.nodes.values():
            options = [(c, c) for c in sorted({*clouds, *node.clouds})]
            if len(node.clouds) > 1:  # the recipe spreads the node: keep that on offer
                spread = ",".join(node.clouds)
                options.insert(0, (f"{', '.join(node.clouds)} (round-robin)", spread))
            picker = w.Dropdown(options=options, description=node.name)
            picker.value = ",".join(node.clouds)
            picker.tooltip = f"{node.multiplicity} instance(s) of node {node.name}"
            self.cloud_pickers[node.name] = picker
            count = w.BoundedIntText(
                value=node.multiplicity, min=1, max=MAX_MULTIPLICITY, description="×"
            )
            count.tooltip = f"how many instances of {node.name}"
            count.layout.width = "120px"
            self.counts[node.name] = count
        self.fields = {name: InputField(spec) for name, spec in self.form.inputs.items()}
        self.nodes_box.children = tuple(
            w.HBox([self.cloud_pickers[n], self.counts[n]]) for n in self.cloud_pickers
        )
        self.inputs_box.children = tuple(f.widget for f in self.fields.values())
        ready = self.backend is not None
        self.plan_button.disabled = self.deploy_button.disabled = not ready
        self.say(f"`{self.form.name}`: {self.form.description}")

    def set_input(self, name: str, text: str) -> bool:
        """Set an input from text, as a user types it; False (and a message) when refused."""
        field = self.fields.get(name)
        why = f"unknown input `{name}`" if field is None else field.set_text(text)
        if why:
            self.say(why, error=True)
            return False
        return True

    def request(self) -> DeployRequest | None:
        """What the widgets ask for; None (and every problem shown) when a value is wrong."""
        if self.form is None:
            self.say("load a recipe first", error=True)
            return None
        problems = [p for f in self.fields.values() if (p := f.problem())]
        if problems:
            self.say("nothing started:\n" + "\n".join(problems), error=True)
            return None
        inputs = {n: f.text() for n, f in self.fields.items() if f.changed() and not f.spec.locked}
        clouds = {
            node: str(picker.value)
            for node, picker in self.cloud_pickers.items()
            if picker.value != ",".join(self.form.nodes[node].clouds)
        }
        counts = {
            node: int(box.value)
            for node, box in self.counts.items()
            if box.value != self.form.nodes[node].multiplicity
        }
        return DeployRequest(self.recipe.value.strip(), inputs, clouds, counts)

    # -- actions ---------------------------------------------------------------------------

    def plan(self) -> None:
        """Show what a deploy would do, per cloud (``terraform plan``; nothing is stored)."""
        if self.backend is None:
            self.say(self.unusable, error=True)
            return
        request = self.request()
        if request is None:
            return
        self.say("planning…")
        try:
            self.plan_view.value = render.plan(self.backend.plan(request))
        except BackendError as err:
            self.say(f"plan refused:\n{err}", error=True)
            return
        self.say("planned: nothing was changed")

    def deploy(self) -> None:
        """Start the run and follow it in the background."""
        if self.backend is None:
            self.say(self.unusable, error=True)
            return
        request = self.request()
        if request is None:
            return
        if self.follower is not None and self.follower.is_alive():
            self.say(f"run {self.run_id} is still being followed", error=True)
            return
        try:
            self.run_id = self.backend.deploy(request)
        except BackendError as err:
            self.say(f"deploy refused, nothing started:\n{err}", error=True)
            return
        # A secret stays in the kernel no longer than needed, and never in a saved notebook
        # (widget state is saved with it): type it again for the next run.
        for field in self.fields.values():
            if field.spec.sensitive:
                field.widget.value = ""
        self.say(f"run {self.run_id} started")
        self.view.clear()
        self.follower = RunFollower(self.backend, self.run_id, self.view.show, self.view.fail)
        self.follower.start()

    def summary(self) -> dict[str, Any]:
        """What the panel shows, as plain data: the run, its state, abort, instances (with
        their status line and address), links, and the message (for scripts and tests)."""
        doc = self.view.doc
        return {
            "run": self.run_id,
            "state": self.view.state,
            "abort": doc.get("abort"),
            "instances": render.instances(doc.get("params") or {}),
            "links": render.run_links(doc),
            "message": render.text_of(self.message.value),
            "error": bool(self.error),
        }

    def wait(self, timeout: float = 600) -> dict[str, Any]:
        """Block until the run settles (Ready or over); its document. For scripts: the
        panel follows the run by itself."""
        if self.follower is None:
            raise RuntimeError("no run deployed from this panel")
        return self.follower.wait(timeout)
