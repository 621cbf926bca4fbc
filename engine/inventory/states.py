"""The instances each run's Terraform state holds, read from the state files themselves.

Reading the JSON (format 4) needs no provider, so it works for every cloud even where
Terraform could not reach the provider's registry. Terraform rewrites a local state file
in place, so a read that meets a half-written file is tried again.

Example:
    >>> import json, tempfile
    >>> root = Path(tempfile.mkdtemp()) / "r1" / "tf" / "aws-eu"
    >>> root.mkdir(parents=True)
    >>> _ = (root / "terraform.tfstate").write_text(json.dumps({"version": 4, "resources": [
    ...     {"mode": "managed", "type": "aws_instance", "name": "web", "instances": [
    ...         {"index_key": "2", "attributes": {"id": "i-0abc"}}]}]}))
    >>> [(i.instance, i.address, i.id) for i in instances_in_state(
    ...     root.parents[2], "r1", "aws-eu", "aws_instance")]
    [('web.2', 'aws_instance.web["2"]', 'i-0abc')]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from engine.inventory.model import StateInstance
from engine.store.runstore import RunFilter, RunRecord, RunStore
from providers_map import mapping_for
from providers_map.machines import RESERVED_PREFIX

STATE_FILE = "terraform.tfstate"
_READ_ATTEMPTS = 5


def state_path(runs: Path, run_id: str, cloud: str) -> Path:
    """Where the local backend keeps the state of a run's root for ``cloud``."""
    return runs / run_id / "tf" / cloud / STATE_FILE


def read_state(path: Path) -> dict[str, Any] | None:
    """The state document, or None when there is no state (never applied)."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            if attempt == _READ_ATTEMPTS - 1:
                raise
            time.sleep(0.1)  # Terraform is writing it
            continue
        return doc if isinstance(doc, dict) else None
    return None


def instances_in_state(
    runs: Path, run_id: str, cloud: str, resource_type: str
) -> list[StateInstance]:
    """Every instance of ``resource_type`` in the state of ``run_id``'s root for ``cloud``."""
    doc = read_state(state_path(runs, run_id, cloud)) or {}
    found = []
    for resource in doc.get("resources") or []:
        if resource.get("mode") != "managed" or resource.get("type") != resource_type:
            continue
        name = str(resource.get("name", ""))
        for entry in resource.get("instances") or []:
            key = entry.get("index_key")
            attributes = entry.get("attributes") or {}
            address = f"{resource_type}.{name}" + (f'["{key}"]' if key is not None else "")
            instance = _instance_name(attributes) or f"{name}.{key}"
            found.append(
                StateInstance(
                    run_id, cloud, instance, address, str(attributes.get("id", "")), attributes
                )
            )
    return found


def _instance_name(attributes: dict[str, Any]) -> str:
    """The instance name a resource records: the label on machines, ``input`` on
    ``terraform_data`` (``local``, ``ssh``)."""
    for labels in (attributes.get("tags"), attributes.get("labels"), attributes.get("metadata")):
        if isinstance(labels, dict) and labels.get(f"{RESERVED_PREFIX}instance"):
            return str(labels[f"{RESERVED_PREFIX}instance"])
    given = attributes.get("input")
    value = given.get("value") if isinstance(given, dict) else None
    if isinstance(value, dict) and value.get("instance"):
        return str(value["instance"])
    return ""


def live_runs(store: RunStore) -> list[RunRecord]:
    """Runs whose resources may still exist: all but those destroyed."""
    return [
        r for r in store.list_runs(where=RunFilter(limit=1_000_000)) if r.checkpoint != "destroyed"
    ]


def cloud_types(run: RunRecord) -> dict[str, str]:
    """Cloud name → cloud type of a run's roots, as recorded when it was created."""
    spec = json.loads(run.spec or "{}")
    return {str(k): str(v) for k, v in (spec.get("cloud_types") or {}).items()}


def run_instances(runs: Path, run: RunRecord) -> list[StateInstance]:
    """Every instance in every root's state of ``run``."""
    found: list[StateInstance] = []
    for cloud, cloud_type in sorted(cloud_types(run).items()):
        resource = mapping_for(cloud_type).instance_resource
        found.extend(instances_in_state(runs, run.id, cloud, resource))
    return found
