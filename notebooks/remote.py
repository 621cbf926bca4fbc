"""The remote backend: a running ``slipstream serve``, through its REST API with a token.

It uses the CLI's standard-library client (:mod:`engine.cli.client`), so a panel needs no
HTTP library either. Recipe files are sent as a bundle (a shipped template by name needs
none). Clouds come from the ``clouds.yaml`` of this machine's home when there is one.

Example (not run as a doctest: it needs a service)::

    backend = RemoteBackend("https://ss.example:8780", "ss_…")
    backend.whoami()  # 'alice', or BackendError("… token …")
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from engine.cli.client import ApiError, ClientSetupError, ServiceClient
from engine.errors import SlipstreamError
from engine.recipes.clouds import CloudsConfig, load_home_clouds
from notebooks.backend import BackendError, DeployRequest, RunQuery, scale_change
from notebooks.recipes import bundle

PAGE = 1000


def _why(err: ApiError) -> str:
    if err.status == 401:
        return f"the service refused the token: {err}"
    problems = err.details.get("problems") if err.status == 422 else None
    if problems:
        return "\n".join(f"{p['file']}:{p['line']}:{p['column']}: {p['message']}" for p in problems)
    return str(err)


class RemoteBackend:
    """Calls ``/api/v1`` of one service as the user of ``token``."""

    def __init__(
        self, url: str, token: str, ca_file: str | None = None, root: Path | None = None
    ) -> None:
        try:
            self.client = ServiceClient(url, token, ca_file)
        except ClientSetupError as err:
            raise BackendError(str(err)) from err
        self.where = url
        self.root = root
        self._lock = threading.Lock()  # one kept-alive connection; the follow thread shares it

    def _call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        try:
            with self._lock:
                return self.client.call(method, path, body, query or None)
        except ApiError as err:
            raise BackendError(_why(err)) from err

    def whoami(self) -> str:
        return str(self._call("GET", "/whoami")["name"])

    def clouds_config(self) -> CloudsConfig:
        """This machine's ``clouds.yaml`` (the REST API does not list the service's)."""
        from notebooks.embedded import home_from_env

        try:
            return load_home_clouds(home_from_env())
        except SlipstreamError:
            return CloudsConfig.default()

    def clouds(self) -> list[str]:
        return sorted({"local", *self.clouds_config().names()})

    def _body(self, request: DeployRequest) -> dict[str, Any]:
        try:
            files, ref = bundle(request.recipe, self.root)
        except SlipstreamError as err:
            raise BackendError(str(err)) from err
        return {
            "deployment": ref,
            "files": files,
            "inputs": dict(request.inputs),
            "clouds": {node: names.split(",") for node, names in request.clouds.items()},
            "multiplicity": dict(request.multiplicity),
        }

    def plan(self, request: DeployRequest) -> dict[str, Any]:
        return dict(self._call("POST", "/plans", self._body(request)))

    def deploy(self, request: DeployRequest) -> str:
        return str(self._call("POST", "/runs", self._body(request))["id"])

    def runs(self, query: RunQuery) -> list[dict[str, Any]]:
        args: dict[str, Any] = {"limit": query.limit}
        if query.state:
            args["state"] = query.state
        if query.recipe:
            args["deployment"] = query.recipe
        if query.user:
            args["user"] = query.user
        docs: list[dict[str, Any]] = list(self._call("GET", "/runs", **args)["runs"])
        if query.cloud:  # the listing does not carry clouds: read them from the parameters
            docs = [d for d in docs if query.cloud in self._clouds_of(d["id"])]
        return docs

    def _clouds_of(self, run_id: str) -> set[str]:
        params = self._call("GET", f"/runs/{run_id}/params")["params"]
        return {v for k, v in params.items() if k.endswith(":cloud")}

    def run(self, run_id: str) -> dict[str, Any]:
        doc = dict(self._call("GET", f"/runs/{run_id}", events=0))
        doc.pop("events", None)
        doc["busy"] = False
        return doc

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"/runs/{run_id}/events", after=after, limit=PAGE)["events"]
            found.extend(page)
            if len(page) < PAGE:
                return found
            after = page[-1]["id"]

    def terminate(self, run_id: str) -> str:
        return str(self._call("POST", f"/runs/{run_id}/terminate")["state"])

    def reports(self, run_id: str) -> list[tuple[str, bytes | None]]:
        # The REST API does not serve report archives (yet): name them from the events.
        names: list[tuple[str, bytes | None]] = []
        for event in self.events(run_id):
            instance = event.get("data", {}).get("instance")
            if event.get("kind") == "report" and instance:
                names.append((f"{instance}.tar.gz", None))
        return names

    def scale(self, run_id: str, node: str, count: int) -> str:
        params = self._call("GET", f"/runs/{run_id}/params")["params"]
        change = scale_change(params, node, count)
        body = {"changes": [change], "remove": []}
        return str(self._call("POST", f"/runs/{run_id}/scale", body)["state"])

    def close(self) -> None:
        self.client.close()
