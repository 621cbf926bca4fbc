"""Fixtures of the scaled mode's tests: a real PostgreSQL (127.0.0.1:5432, database
``test``; each test gets its own schema), ``serve`` replicas and ``worker`` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scaled.cluster import Cluster, pg_reachable


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two ``serve`` replicas and two workers (whose agents use replica 1) on one schema."""
    why = pg_reachable()
    if why is not None:
        pytest.fail(f"{why} (.ci/run starts it; start PostgreSQL 15 on this host)")
    cluster = Cluster.start(tmp_path, replicas=2, workers=2)
    try:
        yield cluster
    finally:
        cluster.stop()
