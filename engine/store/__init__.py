"""Persistent state of runs: tables, Alembic migrations, group commit and the RunStore.

A leaf: imports only the engine's base modules. SQLite by default, PostgreSQL when scaled.
"""
