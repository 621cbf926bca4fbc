"""The parameters the engine sets for an instance when it joins a run (at creation, or
when a scale action adds it).

Example:
    >>> body = {"multiplicity": 2, "image": "x", "size": "small"}
    >>> builtin_params("web.2", body, "local")["web.2:id"]
    '2'
"""

from __future__ import annotations

from typing import Any


def builtin_params(instance: str, body: dict[str, Any], cloud: str) -> dict[str, str]:
    """What the engine sets for an instance when its run is created (DESIGN section 4), under
    our names and SlipStream's (``hostname`` and ``instanceid`` follow once it exists).

    >>> body = {"multiplicity": 2, "image": "ubuntu-22.04", "size": "small"}
    >>> builtin_params("web.2", body, "local")["web.2:node_instance_name"]
    'web.2'
    """
    node, _, index = instance.partition(".")
    values = {
        "nodename": node,
        "id": index,
        "node_instance_name": instance,
        "cloud": cloud,
        "cloudservice": cloud,
        "multiplicity": str(body["multiplicity"]),
        "service-offer": str(body["size"]),
        "image.id": str(body["image"]),
        # SlipStream's per-instance scale state: → created (applied) → operational (Ready).
        "scale.state": "creating",
    }
    return {f"{instance}:{key}": value for key, value in values.items()}
