"""``Panel()``: the deploy panel and the run explorer together, on one backend.

``Panel()`` uses the embedded service of ``$SLIPSTREAM_HOME`` (else ``.slipstream`` here);
``Panel(url=…, token=…)`` a running ``slipstream serve``. A backend that cannot be used
(an unreachable server, a refused token, a damaged home) is said in both panels, and
nothing can start.

Example (in a notebook)::

    from notebooks import Panel
    panel = Panel()
    panel  # displays both; panel.deploy and panel.explorer are the parts
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ipywidgets as w

from notebooks.backend import Backend, BackendError
from notebooks.connect import connect
from notebooks.deploy_panel import DeployPanel
from notebooks.explorer import RunExplorer


class Panel:
    """Deploy and explore, in tabs; ``widget`` is what is displayed."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        home: str | Path | None = None,
        root: str | Path | None = None,
        ca_file: str | None = None,
    ) -> None:
        root_path = Path(root) if root is not None else Path(os.getcwd())
        error = ""
        self.backend: Backend | None
        try:
            self.backend = connect(
                url, token, Path(home) if home is not None else None, root_path, ca_file
            )
        except BackendError as err:
            self.backend, error = None, f"cannot use the service: {err}"
        self.deploy = DeployPanel(self.backend, root_path, error)
        self.explorer = RunExplorer(self.backend, error)
        self.widget = w.Tab(children=[self.deploy.widget, self.explorer.widget])
        self.widget.titles = ("Deploy", "Explore")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
