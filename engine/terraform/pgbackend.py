"""Terraform state in PostgreSQL (the ``pg`` backend) when the service runs on PostgreSQL.

Any worker can then continue any run: the state is never a file on one machine's disk, and
the backend's advisory lock stops a second apply while a first one (say, left running by a
worker that was killed) still holds it. One schema per service (the store's schema, with
``_tfstate`` after it), one workspace per run and cloud. The connection string goes to
Terraform in its environment (``PG_CONN_STR``), never in a file or argv: it may carry a
password.

Example:
    >>> backend = PgBackend.from_url(
    ...     "postgresql+psycopg://ss:pw@db.example:5432/slip?options=-csearch_path%3Dprod")
    >>> backend.schema
    'prod_tfstate'
    >>> env = backend.env("0f3a9c", "local")
    >>> env["PG_CONN_STR"], env["TF_WORKSPACE"]
    ('postgres://ss:pw@db.example:5432/slip?sslmode=require', '0f3a9c-local')
    >>> backend.document()
    {'terraform': {'backend': {'pg': {}}}}
"""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from engine.canonical import dumps
from engine.errors import SlipstreamError
from engine.files import write_atomic

#: The file beside a root's ``main.tf.json`` that selects the backend.
BACKEND_FILE = "backend.tf.json"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "")
# Creating a workspace takes the backend's creation lock, which others' first writes hold.
LOCK_WAIT = "-lock-timeout=120s"
_PREPARE_LOCK_KEY = 7411003  # pg_advisory_lock key: one workspace preparation at a time
# ``workspace new`` takes the creation lock once, without -lock-timeout (the pg backend's
# StateMgr), and every other Terraform process of the database takes it for an instant at
# each lock of its state: so a creation is tried again for a while when it meets it.
CREATION_LOCKED = "Already locked for workspace creation"
CREATION_RETRY_S = 120.0


@dataclass(frozen=True)
class PgBackend:
    """Where Terraform keeps the state of a service's runs."""

    conn_str: str
    schema: str

    @classmethod
    def from_url(cls, url: str) -> PgBackend:
        """From the service's ``SLIPSTREAM_DATABASE_URL`` (``postgresql[+psycopg]://…``)."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        schema = "public"
        for option in query.pop("options", []):
            for word in unquote(option).split():
                if word.startswith("-csearch_path="):
                    schema = word.split("=", 1)[1].split(",")[0].strip() or schema
        # Terraform's PostgreSQL driver (lib/pq) knows disable, require, verify-ca and
        # verify-full; a loopback server needs no TLS, any other one does.
        keep = {k: v[-1] for k, v in query.items() if k in ("sslmode", "sslrootcert")}
        keep.setdefault("sslmode", "disable" if parts.hostname in LOOPBACK else "require")
        conn = urlunsplit(("postgres", parts.netloc, parts.path, urlencode(keep), ""))
        return cls(conn, f"{schema}_tfstate")

    def env(self, run_id: str, cloud: str) -> dict[str, str]:
        """Terraform's environment for the root of ``cloud`` in ``run_id``."""
        return {
            "PG_CONN_STR": self.conn_str,
            "PG_SCHEMA_NAME": self.schema,
            "TF_WORKSPACE": workspace(run_id, cloud),
        }

    def document(self) -> dict[str, object]:
        """The backend block: empty, every setting comes from the environment."""
        return {"terraform": {"backend": {"pg": {}}}}

    def write(self, root: Path) -> None:
        """Select this backend for the root folder ``root`` (idempotent)."""
        path = root / BACKEND_FILE
        text = dumps(self.document())
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)

    def prepare(self, argv: list[str], root: Path, env: Mapping[str, str]) -> None:
        """Make the root's workspace exist before Terraform runs in it with ``TF_WORKSPACE``
        (``init`` refuses a workspace that does not exist once the schema holds others):
        ``init`` and ``workspace new`` in the default workspace, under an advisory lock so
        that Terraform's first creation of its table never races another's."""
        import psycopg

        name = env.get("TF_WORKSPACE") or ""
        plain = {k: v for k, v in env.items() if k != "TF_WORKSPACE"}
        conninfo = self.conn_str.replace("postgres://", "postgresql://", 1)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_PREPARE_LOCK_KEY,))
            steps = (["init", "-input=false", "-no-color"], ["workspace", "new", LOCK_WAIT, name])
            for args in steps:
                if args[0] == "workspace" and not name:
                    continue
                give_up = time.monotonic() + CREATION_RETRY_S
                while True:
                    done = subprocess.run(
                        [*argv, *args],
                        cwd=root,
                        env=plain,
                        capture_output=True,
                        text=True,
                        timeout=600,
                        check=False,
                    )
                    said = re.sub(r"\x1b\[[0-9;]*m", "", done.stderr + done.stdout)
                    if CREATION_LOCKED not in said or time.monotonic() > give_up:
                        break
                    time.sleep(random.uniform(0.1, 0.5))
                if done.returncode != 0 and "already exists" not in said:
                    lines = [x.strip("│╷╵ ") for x in said.splitlines()]
                    why = " ".join(x for x in lines if x and "CLI configuration" not in x)
                    raise StateBackendError(
                        f"terraform {args[0]} for workspace `{name}`: {why[-600:]}"
                    )


class StateBackendError(SlipstreamError):
    """Terraform's state in PostgreSQL could not be prepared."""


def workspace(run_id: str, cloud: str) -> str:
    """The workspace of one cloud root of one run.

    >>> workspace("0f3a9c", "aws-eu")
    '0f3a9c-aws-eu'
    """
    return f"{run_id}-{cloud}"
