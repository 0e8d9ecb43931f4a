"""Text columns ordered by bytes on PostgreSQL (collation "C"), as SQLite orders them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT_COLUMNS = sa.text(
    "SELECT table_name, column_name, data_type, character_maximum_length FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name IN ('images', 'edits', 'artifacts', 'jobs')"
    " AND data_type IN ('character varying', 'text') ORDER BY table_name, ordinal_position"
)


def _collate(collation: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return  # SQLite orders text by its bytes already
    quote = bind.dialect.identifier_preparer.quote
    for table, column, kind, length in bind.execute(_TEXT_COLUMNS):
        type_ = "text" if kind == "text" else f"varchar({length})"
        op.execute(
            f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} TYPE {type_} COLLATE {collation}"
        )


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')
