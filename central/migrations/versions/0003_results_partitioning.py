"""results partitioned by month on PostgreSQL; exactly-once moves to result_keys (issue 17)

A unique key of a partitioned table must include the partition column, so (device_id, epoch,
seq) could no longer be unique across months. It moves to ``result_keys`` (unpartitioned,
primary key (device_id, epoch, seq), with the content hash that ``results`` kept); ``results``
keeps the rows. On PostgreSQL ``results`` is rebuilt as ``PARTITION BY RANGE (received_at)``
with primary key (id, received_at), one partition per month of its rows and up to three months
ahead, the same id sequence; see ``central.core.partitions``. SQLite stays one table.

Rows stored before hashes existed (migration 0002 left them NULL) get their hash here, so every
key can be content-checked.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = "id, device_id, epoch, seq, customer_ref, segment, probabilities, model_version, classified_at, received_at"
_MONTHS_AHEAD = 3


def _month_index(moment: date | datetime) -> int:
    return moment.year * 12 + moment.month - 1


def _month(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def _hash_legacy_rows(connection: sa.Connection) -> None:
    from central.services.results import content_hash

    legacy = connection.execute(
        sa.text(
            "SELECT id, segment, probabilities, model_version, customer_ref, classified_at "
            "FROM results WHERE content_sha256 IS NULL"
        )
    ).all()
    updates = []
    for row_id, segment, probabilities, model_version, customer_ref, classified_at in legacy:
        if isinstance(probabilities, str):  # SQLite hands JSON back as text through text()
            import json

            probabilities = json.loads(probabilities)
        if isinstance(classified_at, str):
            classified_at = datetime.fromisoformat(classified_at)
        digest = content_hash(
            segment=segment,
            probabilities=probabilities,
            model_version=model_version,
            customer_ref=customer_ref,
            classified_at=classified_at,
        )
        updates.append({"id": row_id, "h": digest})
    if updates:
        connection.execute(sa.text("UPDATE results SET content_sha256 = :h WHERE id = :id"), updates)


def _create_partitioned_results(connection: sa.Connection) -> None:
    op.execute(
        "CREATE TABLE results ("
        "id BIGINT NOT NULL DEFAULT nextval('results_id_seq'), "
        "device_id VARCHAR(64) NOT NULL REFERENCES devices (id), "
        "epoch VARCHAR(32) DEFAULT '' NOT NULL, "
        "seq BIGINT NOT NULL, "
        "customer_ref VARCHAR(128), "
        "segment VARCHAR(128) NOT NULL, "
        "probabilities JSON NOT NULL, "
        "model_version VARCHAR(200) NOT NULL, "
        "classified_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, "
        "received_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, "
        "CONSTRAINT results_pkey PRIMARY KEY (id, received_at)"
        ") PARTITION BY RANGE (received_at)"
    )
    op.execute("ALTER SEQUENCE results_id_seq OWNED BY results.id")
    oldest = connection.execute(sa.text("SELECT min(received_at) FROM results_unpartitioned")).scalar()
    now = _month_index(datetime.now(UTC))
    first = min(_month_index(oldest), now) if oldest is not None else now
    for index in range(first, now + _MONTHS_AHEAD + 1):
        start, end = _month(index), _month(index + 1)
        op.execute(
            f"CREATE TABLE results_y{start.year:04d}m{start.month:02d} PARTITION OF results "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )


def upgrade() -> None:
    connection = op.get_bind()
    op.create_table(
        "result_keys",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.PrimaryKeyConstraint("device_id", "epoch", "seq"),
    )
    _hash_legacy_rows(connection)
    op.execute(
        "INSERT INTO result_keys (device_id, epoch, seq, content_sha256, received_at) "
        "SELECT device_id, epoch, seq, content_sha256, received_at FROM results"
    )
    if connection.dialect.name != "postgresql":
        with op.batch_alter_table("results", schema=None) as batch_op:
            batch_op.drop_constraint("uq_results_device_epoch_seq", type_="unique")
            batch_op.drop_column("content_sha256")
        return
    op.execute("ALTER TABLE results RENAME TO results_unpartitioned")
    op.execute("ALTER INDEX results_pkey RENAME TO results_unpartitioned_pkey")
    op.execute("ALTER SEQUENCE results_id_seq OWNED BY NONE")
    _create_partitioned_results(connection)
    op.execute(f"INSERT INTO results ({_COLUMNS}) SELECT {_COLUMNS} FROM results_unpartitioned")
    op.execute("DROP TABLE results_unpartitioned")
    op.create_index("ix_results_customer_ref", "results", ["customer_ref"])
    op.create_index("ix_results_classified_at", "results", ["classified_at"])


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        with op.batch_alter_table("results", schema=None) as batch_op:
            batch_op.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
            batch_op.create_unique_constraint("uq_results_device_epoch_seq", ["device_id", "epoch", "seq"])
        op.execute(
            "UPDATE results SET content_sha256 = (SELECT k.content_sha256 FROM result_keys k "
            "WHERE k.device_id = results.device_id AND k.epoch = results.epoch AND k.seq = results.seq)"
        )
        op.drop_table("result_keys")
        return
    op.drop_index("ix_results_customer_ref", table_name="results")
    op.drop_index("ix_results_classified_at", table_name="results")
    op.execute("ALTER TABLE results RENAME TO results_partitioned")
    op.execute("ALTER INDEX results_pkey RENAME TO results_partitioned_pkey")
    op.execute("ALTER SEQUENCE results_id_seq OWNED BY NONE")
    op.execute(
        "CREATE TABLE results ("
        "id BIGINT NOT NULL DEFAULT nextval('results_id_seq'), "
        "device_id VARCHAR(64) NOT NULL REFERENCES devices (id), "
        "seq BIGINT NOT NULL, "
        "customer_ref VARCHAR(128), "
        "segment VARCHAR(128) NOT NULL, "
        "probabilities JSON NOT NULL, "
        "model_version VARCHAR(200) NOT NULL, "
        "classified_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, "
        "received_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, "
        "epoch VARCHAR(32) DEFAULT '' NOT NULL, "
        "content_sha256 VARCHAR(64), "
        "CONSTRAINT results_pkey PRIMARY KEY (id), "
        "CONSTRAINT uq_results_device_epoch_seq UNIQUE (device_id, epoch, seq))"
    )
    op.execute("ALTER SEQUENCE results_id_seq OWNED BY results.id")
    op.execute(
        f"INSERT INTO results ({_COLUMNS}, content_sha256) "
        f"SELECT {', '.join('r.' + c.strip() for c in _COLUMNS.split(','))}, k.content_sha256 "
        "FROM results_partitioned r LEFT JOIN result_keys k "
        "ON k.device_id = r.device_id AND k.epoch = r.epoch AND k.seq = r.seq"
    )
    op.execute("DROP TABLE results_partitioned CASCADE")
    op.create_index("ix_results_customer_ref", "results", ["customer_ref"])
    op.create_index("ix_results_classified_at", "results", ["classified_at"])
    op.drop_table("result_keys")
