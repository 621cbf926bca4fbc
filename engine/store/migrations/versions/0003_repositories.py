"""GitOps: repositories, their deliveries, the deployments they declare, their PR comments.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repositories",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("branch", sa.String(200), nullable=False),
        sa.Column("secret_env", sa.String(128), nullable=False),
        sa.Column("host", sa.String(16), nullable=False),
        sa.Column("api_url", sa.Text, nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("token_env", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_commit", sa.String(64), nullable=False, server_default=""),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "deliveries",
        sa.Column("repo", sa.String(64), primary_key=True),
        sa.Column("delivery_id", sa.String(200), primary_key=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("run_ids", sa.Text, nullable=False, server_default="[]"),
    )
    op.create_table(
        "declared",
        sa.Column("repo", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("digest", sa.String(64), nullable=False, server_default=""),
        sa.Column("commit_sha", sa.String(64), nullable=False, server_default=""),
        sa.Column("pending_run", sa.String(32), nullable=False, server_default=""),
        sa.Column("pending_digest", sa.String(64), nullable=False, server_default=""),
        sa.Column("pending_commit", sa.String(64), nullable=False, server_default=""),
        sa.Column("prune", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "review_comments",
        sa.Column("repo", sa.String(64), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("comment_id", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for table in ("review_comments", "declared", "deliveries", "repositories"):
        op.drop_table(table)
