"""staged rollouts and their audit events (issue 12)

``staged_rollouts``: a challenger on canary stores, watched against the champion stores, then
promoted or rolled back; ``rollout_events``: every step (who, what, when, why, numbers).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "staged_rollouts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model_version", sa.String(200), sa.ForeignKey("models.model_version"), nullable=False),
        sa.Column("champion_version", sa.String(200), sa.ForeignKey("models.model_version"), nullable=False),
        sa.Column("canary_stores", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("watch_s", sa.Float(), nullable=False),
        sa.Column("min_outcomes", sa.Integer(), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=False),
        sa.Column("rollback_orders", sa.JSON(), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_staged_rollouts_state", "staged_rollouts", ["state"])
    op.create_table(
        "rollout_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.BigInteger(), sa.ForeignKey("staged_rollouts.id"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_rollout_events_rollout_id", "rollout_events", ["rollout_id"])


def downgrade() -> None:
    op.drop_index("ix_rollout_events_rollout_id", table_name="rollout_events")
    op.drop_table("rollout_events")
    op.drop_index("ix_staged_rollouts_state", table_name="staged_rollouts")
    op.drop_table("staged_rollouts")
