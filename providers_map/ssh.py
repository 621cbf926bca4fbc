"""The `ssh` cloud (SlipStream's Physical/Fixed): existing hosts taken from a pool.

Only Terraform's built-ins: one ``terraform_data`` per instance, reached with the ``file``
and ``remote-exec`` provisioners. Hosts are handed out in pool order, node after node;
a deployment that needs more hosts than the pool holds is refused before Terraform runs.
Connection details are copied into ``input`` because destroy-time provisioners may only
read ``self``. ``connect_timeout`` bounds how long Terraform keeps trying a host that does
not answer or refuses the key (its default is five minutes); its error names the host.

Example:
    >>> MAPPING.settings_schema["required"]
    ['hosts']
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
    "server_url": {"type": "string", "description": "where agents reach the service"},
    "agent_path": {"type": "string", "description": "local path of the agent file to upload"},
    "server_fingerprint": {
        "type": "string",
        "default": "",
        "description": "sha256:<hex> of the server's certificate, which agents pin",
    },
    "agent_tokens": {
        "type": "map(string)",
        "sensitive": True,
        "description": "per-instance agent tokens, by instance name",
    },
}

HOST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["address"],
    "additionalProperties": False,
    "properties": {
        "address": {"type": "string", "minLength": 1},
        "user": {"type": "string", "pattern": r"^[a-z_][a-z0-9_-]{0,31}$"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "key_file": {"type": "string", "minLength": 1},
    },
}

# The agent's home on a host; each run and instance gets its own folder below it.
REMOTE_HOME = ".slipstream"


def _connection(timeout: str | None) -> dict[str, str]:
    connection = {
        "type": "ssh",
        "host": "${self.input.host.address}",
        "user": "${self.input.host.user}",
        "port": "${self.input.host.port}",
        "private_key": "${file(pathexpand(self.input.host.key_file))}",
    }
    if timeout:
        connection["timeout"] = timeout
    return connection


class SshMapping(CloudMapping):
    """Instances on hosts of a fixed pool, prepared over SSH."""

    type = "ssh"
    instance_resource = "terraform_data"
    cannot_snapshot: ClassVar[str] = (
        "instances run on existing hosts of a pool; there is no machine image to make"
    )
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["hosts"],
        "additionalProperties": False,
        "properties": {
            "hosts": {"type": "array", "items": HOST_SCHEMA, "minItems": 1},
            "user": {"type": "string", "description": "default user for hosts without one"},
            "key_file": {"type": "string", "description": "default private key file"},
            "connect_timeout": {
                "type": "string",
                "pattern": r"^[1-9][0-9]{0,4}[smh]$",
                "description": "how long to keep trying to reach a host (Terraform's default: 5m)",
            },
        },
    }

    def check(self, root: CloudRoot) -> list[str]:
        needed = sum(len(p.indices) for p in root.placements)
        pool = [str(h.get("address")) for h in root.settings.get("hosts", [])]
        if needed > len(pool):
            return [
                f"{needed} instance(s) need a host each, the pool has {len(pool)} "
                f"({', '.join(pool)}): add hosts to it or ask for fewer instances"
            ]
        return []

    def render(self, root: CloudRoot) -> dict[str, Any]:
        hosts = list(self._hosts(root))
        resources: dict[str, Any] = {}
        for placement in root.placements:
            assigned = {str(i): hosts.pop(0) for i in placement.indices}
            resources[resource_name(placement.node)] = self._resource(root, placement, assigned)
        return {
            "//": f"slipstream deployment {escape(root.deployment)} on cloud {root.cloud}",
            "terraform": {"required_version": ">= 1.4.0"},
            "variable": VARIABLES,
            "resource": {"terraform_data": resources},
            "output": instances_output(
                "terraform_data", root.placements, address="r.input.host.address"
            ),
        }

    def _hosts(self, root: CloudRoot) -> list[dict[str, Any]]:
        default_user = root.settings.get("user", "root")
        default_key = root.settings.get("key_file", "~/.ssh/id_ed25519")
        return [
            {
                "address": escape(str(h["address"])),
                "user": escape(str(h.get("user", default_user))),
                "port": int(h.get("port", 22)),
                "key_file": escape(str(h.get("key_file", default_key))),
            }
            for h in root.settings.get("hosts", [])
        ]

    def _resource(
        self, root: CloudRoot, p: NodePlacement, assigned: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        workdir = f"{REMOTE_HOME}/${{self.input.run_id}}/${{self.input.instance}}"
        for_each = instance_map(p)
        for key, host in assigned.items():
            for_each[key]["host"] = host
        return {
            "for_each": for_each,
            "input": {
                "run_id": "${var.run_id}",
                "deployment": escape(root.deployment),
                "description": escape(root.description),
                "node": p.node,
                "component": p.component,
                "instance": "${each.value.instance}",
                "image": p.image,
                "packages": [escape(x) for x in p.packages],
                "host": "${each.value.host}",
            },
            "connection": _connection(root.settings.get("connect_timeout")),
            "provisioner": [
                {"remote-exec": {"inline": [f"mkdir -p -m 700 {workdir}"]}},
                {"file": {"source": "${var.agent_path}", "destination": f"{workdir}/agent.py"}},
                {
                    "file": {
                        "content": (
                            "SLIPSTREAM_SERVER=${var.server_url}\n"
                            "SLIPSTREAM_RUN_ID=${self.input.run_id}\n"
                            "SLIPSTREAM_INSTANCE=${self.input.instance}\n"
                            "SLIPSTREAM_TOKEN=${var.agent_tokens[self.input.instance]}\n"
                            "SLIPSTREAM_SERVER_FINGERPRINT=${var.server_fingerprint}\n"
                            "SLIPSTREAM_BIND_HOST=0.0.0.0\n"
                        ),
                        "destination": f"{workdir}/agent.env",
                    }
                },
                {
                    "remote-exec": {
                        "inline": [
                            f"chmod 600 {workdir}/agent.env",
                            # Terraform's session has a terminal, whose hang-up at the
                            # end of this script kills any job it left in the background:
                            # the agent ignores SIGHUP and forks into a session of its own
                            # (setsid -f) before the script ends.
                            f"cd {workdir} && nohup setsid -f python3 agent.py run "
                            "--env-file agent.env > agent.log 2>&1 < /dev/null",
                        ]
                    }
                },
                {
                    "remote-exec": {
                        "when": "destroy",
                        "inline": [
                            # `stop` finds the agent's pid file in its working folder.
                            f"if [ -f {workdir}/agent.py ]; then (cd {workdir} && python3 "
                            "agent.py stop --env-file agent.env) || true; fi",
                            f"rm -rf {workdir}",
                            # The run's folder (and ours) go with the last instance on the host.
                            f"rmdir {REMOTE_HOME}/${{self.input.run_id}} {REMOTE_HOME} "
                            "2>/dev/null || true",
                        ],
                    }
                },
            ],
        }


MAPPING = SshMapping()
