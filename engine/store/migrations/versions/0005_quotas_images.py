"""Quotas per user and cloud; images built per (component content hash, cloud).

Revision ID: 0005
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("user_name", sa.String(64), primary_key=True),  # "*": everyone's default
        sa.Column("cloud", sa.String(64), primary_key=True),
        sa.Column("instances", sa.Integer),
        sa.Column("cpu", sa.Integer),
        sa.Column("ram_gb", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "images",
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("cloud", sa.String(64), primary_key=True),
        sa.Column("component", sa.String(64), nullable=False),
        sa.Column("image_id", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("built_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_images_component", "images", ["component"])


def downgrade() -> None:
    op.drop_index("ix_images_component", "images")
    op.drop_table("images")
    op.drop_table("quotas")
