"""The image factory: build a component's image on several clouds at once (DESIGN 10).

Per cloud, in parallel: when an image of the component's current content hash exists, it is
reused (nothing starts); otherwise a build run boots the native image at the root of the
chain, runs the install steps of the whole chain (:func:`engine.compile.images.
build_deployment`), and at Ready the instance is snapshotted:

- ``local``: its sandbox is saved as a content-addressed archive
  (:mod:`engine.runs.localimages`);
- clouds with a snapshot resource (``aws``: ``aws_ami_from_instance``): the root is replaced
  by :func:`~engine.compile.images.build_root` and applied, the new image id read from its
  ``image`` output, and the snapshot taken out of the state so destroying the build machine
  keeps the image.

The build run is destroyed whatever happened. Clouds that cannot snapshot (``ssh``) and
components with nothing to install are refused before anything starts, for every cloud.

Example (not run as a doctest: it deploys)::

        factory = ImageFactory(manager, ImageStore(store))
        factory.build(component, ["local", "aws-eu"], clouds, user="alice")
        # [BuildOutcome(cloud='local', image_id='sha256:…', reused=False, …), …]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from engine.canonical import dumps
from engine.compile.images import build_deployment, build_root, snapshot_address
from engine.errors import CloudError, SlipstreamError
from engine.files import write_atomic
from engine.recipes.clouds import CloudsConfig
from engine.recipes.model import Component
from engine.runs import localimages
from engine.runs.manager import RunManager
from engine.store.images import ImageRecord, ImageStore
from providers_map import mapping_for


@dataclass(frozen=True, slots=True)
class BuildOutcome:
    """What building on one cloud gave: an image (new or reused), or why it failed."""

    cloud: str
    component: str
    content_hash: str
    image_id: str = ""
    reused: bool = False
    run_id: str = ""
    size_bytes: int = 0
    seconds: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "component": self.component,
            "hash": self.content_hash,
            "image": self.image_id,
            "reused": self.reused,
            "run": self.run_id,
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 3),
            "error": self.error or None,
        }


def refusals(component: Component, clouds: list[str], config: CloudsConfig) -> list[str]:
    """Why building ``component`` on ``clouds`` cannot start (empty when it can).

    >>> from engine.errors import Mark
    >>> from engine.recipes.clouds import parse_clouds_text
    >>> from engine.recipes.loader import RecipeLoader
    >>> cfg = parse_clouds_text("clouds:\\n  rack: {type: ssh, hosts: [{address: h1}]}\\n")
    >>> comp = RecipeLoader(None, cfg).component("ubuntu", Mark("t", 0, 0))
    >>> refusals(comp, ["rack"], cfg)[0].startswith("cloud `rack` (type `ssh`) cannot make")
    True
    """
    found = []
    if component.virtual:
        found.append(
            f"component `{component.name}` has no install steps (no packages, pre_install or"
            " post_install in its chain): there is nothing to bake into an image"
        )
    if not clouds:
        found.append("no cloud given (--cloud NAME, once per cloud)")
    for cloud in clouds:
        if cloud not in config.names():
            known = ", ".join(sorted(config.names()))
            found.append(f"unknown cloud `{cloud}` (configured: {known})")
            continue
        mapping = mapping_for(config.get(cloud).type)
        if not mapping.can_snapshot:
            found.append(
                f"cloud `{cloud}` (type `{mapping.type}`) cannot make images: "
                f"{mapping.cannot_snapshot}"
            )
    return found


class ImageFactory:
    """Builds, snapshots and records images with the runs of one run manager."""

    def __init__(self, manager: RunManager, images: ImageStore) -> None:
        self.manager = manager
        self.images = images

    def build(
        self,
        component: Component,
        clouds: list[str],
        config: CloudsConfig,
        user: str,
        on_run: Callable[[str, str], None] | None = None,
    ) -> list[BuildOutcome]:
        """Build on every cloud in parallel; one outcome per cloud, in the order given.
        CloudError (nothing started) when any cloud or the component is refused.
        ``on_run(cloud, run_id)`` is called as each build run is created."""
        problems = refusals(component, clouds, config)
        if problems:
            raise CloudError("\n".join(f"build: {p}" for p in problems))
        if self.manager.serve is not None:
            self.manager.serve()  # one agent server, started before the parallel drives

        def one(cloud: str) -> BuildOutcome:
            return self._one(component, cloud, config, user, on_run)

        unique = list(dict.fromkeys(clouds))
        with ThreadPoolExecutor(max_workers=len(unique)) as pool:
            return list(pool.map(one, unique))

    def _one(
        self,
        component: Component,
        cloud: str,
        config: CloudsConfig,
        user: str,
        on_run: Callable[[str, str], None] | None,
    ) -> BuildOutcome:
        base = BuildOutcome(cloud, component.name, component.content_hash)
        current = self.images.current(component.content_hash, cloud)
        if current is not None:
            return replace(
                base,
                image_id=current.image_id,
                reused=True,
                run_id=current.run_id,
                size_bytes=current.size_bytes,
            )
        started = time.monotonic()
        origin = {"build": component.name, "hash": component.content_hash, "cloud": cloud}
        try:
            dep = build_deployment(component, cloud)
            run_id = self.manager.create(dep, config, user, origin=origin)
        except SlipstreamError as err:
            return replace(base, error=str(err))
        if on_run is not None:
            on_run(cloud, run_id)
        try:
            state = self.manager.drive(run_id)
            if state != "Ready":
                run = self.manager.store.get_run(run_id)
                why = run.abort_message if run is not None and run.abort_message else state
                raise CloudError(f"build run `{run_id}` ended {state}: {why}")
            image_id, size = self._snapshot(run_id, component, cloud, config)
            self.images.record(
                ImageRecord(
                    component.content_hash,
                    cloud,
                    component.name,
                    image_id,
                    size,
                    run_id,
                    user,
                    time.time(),
                )
            )
            self.manager.store.add_event(
                run_id,
                "image",
                f"{cloud}: image {image_id} of `{component.name}` saved ({size} bytes)",
                {"cloud": cloud, "image": image_id, "hash": component.content_hash},
            )
            return replace(
                base,
                image_id=image_id,
                run_id=run_id,
                size_bytes=size,
                seconds=time.monotonic() - started,
            )
        except Exception as err:
            message = str(err) if isinstance(err, SlipstreamError) else repr(err)
            self.manager.store.add_event(run_id, "error", f"{cloud}: build failed: {message}")
            return replace(base, run_id=run_id, error=message)
        finally:
            # The build machine goes, whatever happened (the image, taken out of the
            # state, stays).
            self.manager.terminate(run_id)

    def _snapshot(
        self, run_id: str, component: Component, cloud: str, config: CloudsConfig
    ) -> tuple[str, int]:
        cloud_type = config.get(cloud).type
        if cloud_type == "local":
            sandbox = self.manager.run_dir(run_id) / "sandboxes" / f"{component.name}.1"
            return localimages.save(self.manager.home, sandbox)
        root = build_root(component, cloud, config)
        write_atomic(self.manager.run_dir(run_id) / "tf" / cloud / "main.tf.json", dumps(root))
        runner = self.manager._runner(run_id, cloud)
        variables = self.manager._variables(run_id, cloud_type)
        self.manager.store.add_event(run_id, "terraform", f"{cloud}: snapshot started")
        runner.plan(variables)
        runner.apply()
        image_id = str(runner.output().get("image") or "")
        runner.state_rm([snapshot_address(component, cloud_type)])
        if not image_id:
            raise CloudError(f"{cloud}: the snapshot gave no image id")
        return image_id, 0
