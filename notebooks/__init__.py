"""The notebook front door: ipywidgets panels to deploy and explore runs from Jupyter.

``Panel()`` (deploy and explore, on the embedded service of this folder's home) or
``Panel(url=…, token=…)`` (a running ``slipstream serve``); :class:`DeployPanel` and
:class:`RunExplorer` alone; ``slipstream dashboard`` serves the explorer with Voilà.
The widgets are clients of the service facade (:mod:`notebooks.backend`), nothing more.

Example (in a notebook)::

    from notebooks import Panel
    Panel()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from notebooks.deploy_panel import DeployPanel
    from notebooks.explorer import RunExplorer
    from notebooks.panel import Panel

__all__ = ["DeployPanel", "Panel", "RunExplorer"]


def __getattr__(name: str) -> Any:
    # Lazily: `slipstream dashboard` finds this package's notebook without ipywidgets.
    if name == "Panel":
        from notebooks.panel import Panel

        return Panel
    if name == "DeployPanel":
        from notebooks.deploy_panel import DeployPanel

        return DeployPanel
    if name == "RunExplorer":
        from notebooks.explorer import RunExplorer

        return RunExplorer
    raise AttributeError(name)
