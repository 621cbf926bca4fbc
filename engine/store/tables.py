"""The run store's tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Alembic migrations under ``engine/migrations`` create them; this module is their one
description in code.

Example:
    >>> sorted(METADATA.tables)
    ['events', 'instances', 'params', 'reports', 'runs', 'votes']
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

METADATA = MetaData()

runs = Table(
    "runs",
    METADATA,
    Column("id", String(32), primary_key=True),
    Column("deployment", String(64), nullable=False),
    Column("user", String(128), nullable=False),
    Column("state", String(32), nullable=False),
    Column("state_since", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("abort_message", Text),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("keep_running", String(16), nullable=False),
    Column("timeout_s", Integer, nullable=False),
    Column("spec", Text, nullable=False),  # the run's plan as canonical JSON (see runspec)
    Column("checkpoint", String(64), nullable=False, default=""),
    Column("error", Text),
)

instances = Table(
    "instances",
    METADATA,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("name", String(80), primary_key=True),
    Column("node", String(64), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("cloud", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("removed", Boolean, nullable=False, default=False),
)

params = Table(
    "params",
    METADATA,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

votes = Table(
    "votes",
    METADATA,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("instance", String(80), primary_key=True),
    Column("state", String(32), primary_key=True),
    Column("at", Float, nullable=False),
)

events = Table(
    "events",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", Text, nullable=False, default="{}"),
    Index("ix_events_run", "run_id", "id"),
)

reports = Table(
    "reports",
    METADATA,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("instance", String(80), primary_key=True),
    Column("path", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("at", Float, nullable=False),
)
