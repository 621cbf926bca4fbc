"""The run explorer: a table of runs (filter by state, recipe, cloud, user; newest first),
the selected run's details, timeline and report archives, and Destroy / Scale behind a
confirmation.

Example (not run as a doctest: it reads a service home)::

    explorer = RunExplorer(EmbeddedBackend.open())
    explorer.state_filter.value = "Ready"
    explorer.refresh()
    explorer.select(explorer.run_ids[0])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

import notebooks.render as render
from engine.coordination.coordinator import STATES as RUN_STATES
from notebooks.backend import Backend, BackendError, RunQuery
from notebooks.follow import RunFollower
from notebooks.runview import RunView

#: The state filter's choices: any, then every state of a run.
STATES = ("", *RUN_STATES)


def over(doc: dict[str, Any]) -> bool:
    """Whether a run is over and nothing works on it any more (a destroy is done).

    >>> over({"state": "Ready"}), over({"state": "Done", "busy": False})
    (False, True)
    """
    return doc.get("state") in ("Done", "Cancelled", "Aborted") and not doc.get("busy")


class RunExplorer:
    """Widgets to browse the runs of a backend; ``widget`` is what to display."""

    def __init__(self, backend: Backend | None, error: str = "") -> None:
        self.backend = backend
        self.runs: list[dict[str, Any]] = []
        self.follower: RunFollower | None = None
        self.pending: Callable[[], None] | None = None
        self.state_filter = w.Dropdown(options=STATES, value="", description="state")
        self.recipe_filter = w.Text(description="recipe", placeholder="any")
        clouds = [""]
        if backend is not None:
            try:
                clouds += backend.clouds()
            except BackendError as err:
                error = error or str(err)
        self.cloud_filter = w.Dropdown(options=clouds, value="", description="cloud")
        self.user_filter = w.Text(description="user", placeholder="any")
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.table = w.HTML()
        self.picker = w.Select(options=[], rows=6, description="run", layout={"width": "90%"})
        self.message = w.HTML()
        self.view = RunView()
        self.reports_view = w.HTML()
        self.destroy_button = w.Button(description="Destroy", icon="trash", button_style="danger")
        self.scale_node = w.Text(description="node", layout={"width": "180px"})
        self.scale_count = w.BoundedIntText(value=1, min=0, max=1000, description="to")
        self.scale_button = w.Button(description="Scale", icon="arrows-v")
        self.confirm_text = w.HTML()
        self.confirm_button = w.Button(description="Confirm", button_style="danger")
        self.cancel_button = w.Button(description="Cancel")
        self.confirm_box = w.HBox([self.confirm_text, self.confirm_button, self.cancel_button])
        self.confirm_box.layout.display = "none"
        self.actions = w.HBox(
            [self.destroy_button, self.scale_node, self.scale_count, self.scale_button]
        )
        self.refresh_button.on_click(lambda _: self.refresh())
        self._quiet = False  # the list is being redone: the selection is not the user's
        self.picker.observe(self._picked, names="value")
        self.destroy_button.on_click(lambda _: self.ask_destroy())
        self.scale_button.on_click(lambda _: self.ask_scale())
        self.confirm_button.on_click(lambda _: self.confirm())
        self.cancel_button.on_click(lambda _: self.cancel())
        where = f"<small>service: {render.e(backend.where)}</small>" if backend else ""
        filters = w.HBox(
            [self.state_filter, self.recipe_filter, self.cloud_filter, self.user_filter]
        )
        self.widget = w.VBox(
            [
                w.HTML(f"<h3>Runs</h3>{where}"),
                filters,
                self.refresh_button,
                self.message,
                self.table,
                self.picker,
                self.actions,
                self.confirm_box,
                self.view.widget,
                self.reports_view,
            ]
        )
        if error:
            self.say(error, error=True)
        elif backend is not None:
            self.refresh()

    @classmethod
    def open(
        cls, url: str | None = None, token: str | None = None, *, home: str | None = None
    ) -> RunExplorer:
        """The explorer of this folder's home, or of ``url`` with ``token``; a backend that
        cannot be used is said in the panel."""
        from pathlib import Path

        from notebooks.connect import connect

        try:
            return cls(connect(url, token, Path(home) if home else None))
        except BackendError as err:
            return cls(None, f"cannot use the service: {err}")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def summary(self) -> dict[str, Any]:
        """What the explorer shows, as plain data (for scripts and tests)."""
        return {
            "runs": [(r["id"], r["deployment"], r["state"]) for r in self.runs],
            "selected": self.picker.value,
            "state": self.view.state,
            "timeline": "data-state=" in self.view.chart.value,
            "reports": self.reports_view.value.count("<li>"),
            "message": render.text_of(self.message.value),
            "error": bool(self.error),
        }

    def say(self, text: str, error: bool = False) -> None:
        self.message.value = render.message(text, error)

    @property
    def error(self) -> str:
        """The text of the error shown now ('' when none), for scripts and tests."""
        return self.message.value if "ss-error" in self.message.value else ""

    @property
    def run_ids(self) -> list[str]:
        return [str(r["id"]) for r in self.runs]

    # -- the table -------------------------------------------------------------------------

    def refresh(self) -> None:
        """List the runs matching the filters again, newest first."""
        if self.backend is None:
            return
        query = RunQuery(
            state=self.state_filter.value or "",
            recipe=self.recipe_filter.value.strip(),
            cloud=self.cloud_filter.value or "",
            user=self.user_filter.value.strip(),
        )
        try:
            self.runs = self.backend.runs(query)
        except BackendError as err:
            self.say(f"cannot list runs: {err}", error=True)
            return
        self.table.value = render.runs(self.runs)
        chosen = self.picker.value
        self._quiet = True
        try:
            self.picker.options = [
                (f"{r['id']} · {r['deployment']} · {r['state']}", r["id"]) for r in self.runs
            ]
            self.picker.value = chosen if chosen in self.run_ids else None
        finally:
            self._quiet = False
        if chosen is not None and self.picker.value is None:
            self.select(None)  # the shown run is filtered out
        self.say(f"{len(self.runs)} run(s)")

    # -- one run ---------------------------------------------------------------------------

    def _picked(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self.select(change["new"])

    def select(self, run_id: str | None) -> None:
        """Show a run's details, timeline and reports, live while it moves."""
        if self.follower is not None:
            self.follower.stop()
        self.cancel()
        self.view.clear()
        self.reports_view.value = ""
        if not run_id or self.backend is None:
            return
        if self.picker.value != run_id and run_id in self.run_ids:
            self.picker.value = run_id  # comes back here through the observer
            return
        self.follower = RunFollower(self.backend, run_id, self._show, self.view.fail)
        self.follower.start()

    def _show(self, doc: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self.view.show(doc, events)
        if self.backend is not None and doc.get("state") in ("Ready", "Done", "Aborted"):
            try:
                self.reports_view.value = render.reports(self.backend.reports(str(doc["id"])))
            except BackendError as err:
                self.reports_view.value = render.message(str(err), error=True)

    def wait(self, timeout: float = 600) -> dict[str, Any]:
        """Block until the selected run settles; its document (for scripts and tests)."""
        if self.follower is None:
            raise RuntimeError("no run selected")
        return self.follower.wait(timeout)

    # -- destroy and scale, confirmed ---------------------------------------------------------

    def _ask(self, question: str, action: Callable[[], None]) -> None:
        if not self.picker.value:
            self.say("select a run first", error=True)
            return
        self.pending = action
        self.confirm_text.value = f"<b>{render.e(question)}</b>"
        self.confirm_box.layout.display = "flex"

    def ask_destroy(self) -> None:
        run_id = str(self.picker.value or "")
        self._ask(f"Destroy run {run_id} and everything it made?", lambda: self._destroy(run_id))

    def ask_scale(self) -> None:
        run_id, node, count = str(self.picker.value or ""), self.scale_node.value.strip(), 0
        count = int(self.scale_count.value)
        self._ask(
            f"Scale node {node} of run {run_id} to {count}?",
            lambda: self._scale(run_id, node, count),
        )

    def confirm(self) -> None:
        action, self.pending = self.pending, None
        self.confirm_box.layout.display = "none"
        if action is not None:
            action()

    def cancel(self) -> None:
        self.pending = None
        self.confirm_box.layout.display = "none"

    def _destroy(self, run_id: str) -> None:
        assert self.backend is not None
        try:
            state = self.backend.terminate(run_id)
        except BackendError as err:
            self.say(f"destroy refused: {err}", error=True)
            return
        self.say(f"run {run_id}: destroying (was {state})")
        if self.follower is not None:
            self.follower.stop()
        self.follower = RunFollower(
            self.backend, run_id, self._destroyed, self.view.fail, until=over
        )
        self.follower.start()

    def _destroyed(self, doc: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self._show(doc, events)
        if over(doc):
            self.say(f"run {doc['id']}: {doc['state']}")

    def _scale(self, run_id: str, node: str, count: int) -> None:
        assert self.backend is not None
        try:
            self.backend.scale(run_id, node, count)
        except BackendError as err:
            self.say(str(err), error=True)
