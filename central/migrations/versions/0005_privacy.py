"""privacy: noised device reports, erasures and their audit (issue 15)

``private_reports`` keeps each noised release a device sent (its ε/δ: the spent budget per
device and UTC day is their sum); ``erasures`` is the audit of erasure requests (the ref only
until every device confirmed), ``erasure_devices`` each device's part of one.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "private_reports",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=128), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("model_version", sa.String(length=200), nullable=False),
        sa.Column("mechanism", sa.String(length=16), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("sensitivity", sa.Integer(), nullable=False),
        sa.Column("noise_std", sa.Float(), nullable=False),
        sa.Column("histograms", sa.JSON(), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.ForeignKeyConstraint(["model_version"], ["models.model_version"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "report_id", name="uq_private_reports_device_report"),
    )
    op.create_index("ix_private_reports_device_day", "private_reports", ["device_id", "day"])
    op.create_index("ix_private_reports_model_version", "private_reports", ["model_version"])
    op.create_table(
        "erasures",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("customer_ref", sa.String(length=128), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("results_deleted", sa.BigInteger(), nullable=False),
        sa.Column("outcomes_deleted", sa.BigInteger(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "erasure_devices",
        sa.Column("erasure_id", _ID, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.Column("device_removed", sa.BigInteger(), nullable=False),
        sa.Column("late_results_deleted", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.ForeignKeyConstraint(["erasure_id"], ["erasures.id"]),
        sa.PrimaryKeyConstraint("erasure_id", "device_id"),
    )


def downgrade() -> None:
    op.drop_table("erasure_devices")
    op.drop_table("erasures")
    op.drop_index("ix_private_reports_model_version", table_name="private_reports")
    op.drop_index("ix_private_reports_device_day", table_name="private_reports")
    op.drop_table("private_reports")
