"""A scaled set-up for tests: one PostgreSQL schema, ``serve`` replicas and ``worker``s as
real processes sharing it (and, on this one host, the service home).

Example (in a test)::

    cluster = Cluster.start(tmp_path, replicas=2, workers=2)
    run_id = cluster.deploy(cluster.replicas[0], "webapp")
    cluster.wait_state(run_id, "Ready")
    cluster.stop()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.e2e import REPO, cli, marked_processes
from tests.served import Served

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
START_S = 90.0


def pg_reachable() -> str | None:
    """None when the test database answers, else why not."""
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        return f"PostgreSQL at 127.0.0.1:5432 (database `test`) is not reachable: {err}"
    return None


def _json(text: str | None) -> Any:
    return json.loads(text or "{}")


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    ops_url: str = ""

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@dataclass
class Cluster:
    base: Path
    home: Path
    schema: str
    url: str
    replicas: list[Served] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    token: str = ""

    @classmethod
    def start(
        cls, base: Path, replicas: int = 2, workers: int = 2, stall_s: float = 6.0
    ) -> Cluster:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        home = base / "home"
        home.mkdir(parents=True)
        cluster = cls(base, home, schema, url)
        cluster.stall_s = stall_s
        try:
            cli(home, "db", "upgrade", env=cluster.env(), check=True, timeout=120)
            for i in range(replicas):
                cluster.replicas.append(cluster.serve(f"r{i}"))
            for i in range(workers):
                cluster.workers.append(cluster.worker(f"w{i}"))
            cli(home, "user", "add", "alice", "--admin", env=cluster.env(), check=True)
            made = cli(home, "token", "create", "--user", "alice", "--json", env=cluster.env())
            cluster.token = str(json.loads(made.stdout)["token"])
        except BaseException:
            cluster.stop()
            raise
        return cluster

    stall_s: float = 6.0

    def env(self) -> dict[str, str]:
        return {"SLIPSTREAM_DATABASE_URL": self.url}

    def _popen(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ, SLIPSTREAM_HOME=str(self.home), **self.env())
        for name in ("SLIPSTREAM_URL", "SLIPSTREAM_TOKEN"):
            env.pop(name, None)
        with log.open("wb") as sink:
            return subprocess.Popen(
                [sys.executable, "-m", "engine.cli.app", *args],
                cwd=REPO,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def _await(self, proc: subprocess.Popen[bytes], log: Path, prefix: str) -> str:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.kill()
        raise AssertionError(f"{prefix.strip()} did not start:\n{log.read_text(errors='replace')}")

    def serve(self, name: str) -> Served:
        log = self.base / f"serve-{name}.log"
        args = ["serve", "--host", "127.0.0.1", "--port", "0", "--tls", "off"]
        proc = self._popen(args, log)
        line = self._await(proc, log, "serving ")
        return Served(self.home, line.split()[1], proc, log)

    def agents_url(self, replica: Served) -> str:
        """Where agents on this host reach ``replica`` (its Unix socket)."""
        return f"unix:{(self.home / 'sockets' / f'{replica.proc.pid}.sock').resolve()}"

    def worker(self, name: str, via: int = 1, concurrency: int = 2) -> Worker:
        log = self.base / f"worker-{name}.log"
        args = ["worker", "--concurrency", str(concurrency), "--stall-after", str(self.stall_s)]
        args += ["--agents", self.agents_url(self.replicas[via]), "--ops-port", "0"]
        args.append("--json-logs")
        proc = self._popen(args, log)
        line = self._await(proc, log, "worker ")
        return Worker(proc, log, line.rsplit("ops at ", 1)[-1].strip())

    def call(self, replica: Served, method: str, path: str, body: Any = None) -> Any:
        answer = replica.call(method, path, self.token, body)
        assert answer.status < 300, (answer.status, answer.raw)
        return answer.json

    def deploy(self, replica: Served, deployment: str = "webapp") -> str:
        doc = self.call(replica, "POST", "/api/v1/runs", {"deployment": deployment})
        return str(doc["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.call(self.replicas[0], "GET", f"/api/v1/runs/{run_id}"))

    def wait_state(self, run_id: str, *states: str, timeout: float = 400) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = self.run(run_id)
            if doc["state"] in states:
                return doc
            time.sleep(0.5)
        raise AssertionError(
            f"run {run_id} not in {states} after {timeout}s: {doc.get('state')} {self.logs()}"
        )

    def events(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.sql(
            "SELECT id, at, kind, message, data FROM events WHERE run_id = %s ORDER BY id",
            (run_id,),
        )
        return [
            {
                "id": r[0],
                "at": r[1],
                "kind": r[2],
                "message": r[3],
                "data": json.loads(r[4] or "{}"),
            }
            for r in rows
        ]

    def sql(self, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            return conn.execute(query, args).fetchall()  # type: ignore[arg-type]

    def logs(self) -> str:
        out = []
        for log in sorted(self.base.glob("*.log")):
            out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        """Stop every process, destroy what runs are left (embedded), drop the schema."""
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            if replica.proc.poll() is None:
                replica.proc.send_signal(signal.SIGTERM)
        for proc in [w.proc for w in self.workers] + [r.proc for r in self.replicas]:
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        runs = self.home / "runs"
        for run in sorted(runs.iterdir()) if runs.is_dir() else []:
            if marked_processes(run.name):
                cli(self.home, "destroy", run.name, env=self.env(), timeout=300)
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}_tfstate" CASCADE')
