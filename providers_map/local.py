"""The embedded `local` cloud: each instance processes on this host, in its own Linux
namespaces where bubblewrap is available (the launcher's business, not this root's).

Built only on Terraform's built-in ``terraform_data`` resource and ``local-exec``
provisioners, so no provider is ever downloaded. Each provisioner runs the launcher
(``var.launcher``, an argv list) with ``start`` or ``stop``; values reach it through the
environment, never through a shell. The launcher is copied into ``input`` because
destroy-time provisioners may only read ``self``.

Example:
    >>> MAPPING.instance_resource
    'terraform_data'
"""

from __future__ import annotations

from typing import Any, ClassVar

from providers_map.base import (
    COMMON_VARIABLES,
    CloudMapping,
    CloudRoot,
    NodePlacement,
    escape,
    instance_map,
    instances_output,
    resource_name,
)

VARIABLES: dict[str, Any] = {
    **COMMON_VARIABLES,
    "launcher": {
        "type": "list(string)",
        "description": "argv of the instance launcher; `start` or `stop` is appended",
    },
    "sandbox_root": {
        "type": "string",
        "description": "directory under the service home holding one sandbox per instance",
    },
}


def _environment(p: NodePlacement) -> dict[str, str]:
    env = {
        "SLIPSTREAM_RUN_ID": "${self.input.run_id}",
        "SLIPSTREAM_INSTANCE": "${self.input.instance}",
        "SLIPSTREAM_SANDBOX": "${self.input.sandbox}",
    }
    if p.built_image:
        env["SLIPSTREAM_IMAGE"] = "${self.input.built_image}"
    return env


class LocalMapping(CloudMapping):
    """Instances as sandboxed processes on the host running Terraform."""

    type = "local"
    instance_resource = "terraform_data"
    # An image is the prepared sandbox, archived by the engine (engine.runs.localimages);
    # a placement with ``built_image`` has its launcher start the sandbox from it.
    engine_snapshots: ClassVar[bool] = True

    def render(self, root: CloudRoot) -> dict[str, Any]:
        resources = {resource_name(p.node): self._resource(root, p) for p in root.placements}
        return {
            "//": f"slipstream deployment {escape(root.deployment)} on cloud {root.cloud}",
            "terraform": {"required_version": ">= 1.4.0"},
            "variable": VARIABLES,
            "resource": {"terraform_data": resources},
            "output": instances_output("terraform_data", root.placements, address='"127.0.0.1"'),
        }

    def _resource(self, root: CloudRoot, p: NodePlacement) -> dict[str, Any]:
        built = {"built_image": escape(p.built_image)} if p.built_image else {}
        return {
            "for_each": instance_map(p),
            "input": {
                "run_id": "${var.run_id}",
                "deployment": escape(root.deployment),
                "description": escape(root.description),
                "node": p.node,
                "component": p.component,
                "instance": "${each.value.instance}",
                "image": p.image,
                "packages": [escape(x) for x in p.packages],
                "launcher": "${var.launcher}",
                "sandbox": "${var.sandbox_root}/${each.value.instance}",
                **built,
            },
            "provisioner": [
                {
                    "local-exec": {
                        "interpreter": "${self.input.launcher}",
                        "command": "start",
                        "environment": _environment(p),
                    }
                },
                {
                    "local-exec": {
                        "when": "destroy",
                        "interpreter": "${self.input.launcher}",
                        "command": "stop",
                        "environment": _environment(p),
                    }
                },
            ],
        }


MAPPING = LocalMapping()
