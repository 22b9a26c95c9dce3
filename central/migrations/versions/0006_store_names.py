"""store display names (issue 14, item 6)

``store_names``: the name an analyst reads for a store id ("Leeds Briggate" for
``store-7``), set by ``edgeseg-central store rename``.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_names",
        sa.Column("store", sa.String(128), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("renamed_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_names")
