"""Persistent state of runs: the RunStore, its connections, group commit and migrations.

A leaf: imports only the engine's base modules. SQLite by default, PostgreSQL when scaled,
both in plain SQL (stdlib ``sqlite3``, psycopg 3); SQLAlchemy and Alembic are imported only
to migrate a schema that is behind. There are no table objects: the Alembic migrations are
the schema's one description, so there is nothing to keep in step with them, and the
store's SQL is checked against them by the tests, on both databases.
"""
