"""Indexes and constraints built after a bulk copy into PostgreSQL.

Loading a table without its secondary indexes, unique and foreign keys, then building them, is several times
faster than maintaining them row by row. Names come from the SQLAlchemy metadata, so they match what the
migrations create; indexes the metadata does not describe (PostGIS's) are kept in a table comment meanwhile,
so that an interrupted copy still rebuilds them.
"""

from __future__ import annotations

import json
from typing import TypeVar

import sqlalchemy as sa
from psycopg import sql

from panopipe.catalog.engine import connect

_Statement = sa.ExecutableDDLElement | sa.TextClause


def _deferred(table: sa.Table) -> list[tuple[str, _Statement, list[_Statement]]]:
    """Name, creation and removal of what a bulk copy builds afterwards: indexes, unique keys (their indexes:
    see :func:`complete`) and foreign keys."""
    found: list[tuple[str, _Statement, list[_Statement]]] = [
        (str(index.name), sa.schema.CreateIndex(index), [sa.schema.DropIndex(index)])
        for index in sorted(table.indexes, key=lambda index: str(index.name))
    ]
    found += [
        # A unique key may be its index alone, when a run stopped before attaching it.
        (str(c.name), _unique_index(c), [sa.schema.DropConstraint(c, if_exists=True), _drop_index(c)])
        for c in _constraints(table, sa.UniqueConstraint)
    ]
    found += [
        (str(c.name), sa.schema.AddConstraint(c), [sa.schema.DropConstraint(c)])
        for c in _constraints(table, sa.ForeignKeyConstraint)
    ]
    return found


_Kind = TypeVar("_Kind", bound=sa.Constraint)


def _constraints(table: sa.Table, kind: type[_Kind]) -> list[_Kind]:
    return sorted((c for c in table.constraints if isinstance(c, kind)), key=lambda c: str(c.name))


def _unique_index(constraint: sa.UniqueConstraint) -> sa.TextClause:
    """The index of a unique key, named as the key: built without the exclusive lock that adding the key
    takes, so that it can be built while the table is read."""
    columns = ", ".join(f'"{column.name}"' for column in constraint.columns)
    return sa.text(f'CREATE UNIQUE INDEX "{constraint.name}" ON "{constraint.table.name}" ({columns})')


def _drop_index(constraint: sa.Constraint) -> sa.TextClause:
    return sa.text(f'DROP INDEX IF EXISTS "{constraint.name}"')


def _present(conn: sa.Connection, table: sa.Table) -> set[str]:
    """Names of the indexes and constraints ``table`` has on the target."""
    return set(conn.execute(_INDEXES_AND_CONSTRAINTS, {"t": table.name}).scalars())


_INDEXES_AND_CONSTRAINTS = sa.text(
    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(:t)"
    " UNION SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:t)"
)
_CONSTRAINTS = sa.text("SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:t)")


_OTHER_INDEXES = "panopipe: indexes to build after the copy: "
"""Prefix of the table comment that keeps, while a copy runs, the indexes the SQLAlchemy metadata does not
describe (PostGIS's ``ix_images_geom``): an interrupted copy rebuilds them when it is resumed."""


def drop_secondary(engine: sa.Engine, table: sa.Table) -> None:
    """Drop the secondary indexes and constraints of an empty ``table``: they are built after the copy."""
    with engine.begin() as conn:
        present = _present(conn, table)
        for name, _, removal in reversed(_deferred(table)):
            if name in present:
                for statement in removal:
                    conn.execute(statement)
        others = conn.execute(
            sa.text(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = to_regclass(:t) AND NOT i.indisprimary ORDER BY c.relname"
            ),
            {"t": table.name},
        ).all()
        if others:
            _comment(conn, table, _OTHER_INDEXES + json.dumps([list(row) for row in others]))
            for name, _ in others:
                conn.execute(sa.text(f"DROP INDEX {conn.dialect.identifier_preparer.quote(name)}"))


def missing(engine: sa.Engine, table: sa.Table) -> list[_Statement]:
    """The statements that build what ``table`` lacks: indexes, unique keys (as their indexes) and foreign
    keys. Each runs on its own with :func:`build`, in any order or several at once, and none keeps the table
    from being read; :func:`complete` follows them."""
    with connect(engine) as conn:
        present, others = _present(conn, table), _other_indexes(conn, table)
    creations = [create for name, create, _ in _deferred(table) if name not in present]
    return creations + [sa.text(definition) for name, definition in others if name not in present]


def build(engine: sa.Engine, statement: _Statement) -> None:
    """Run one statement of :func:`missing`, committed on its own (an interruption keeps what was built)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
        conn.execute(statement)


def complete(engine: sa.Engine, table: sa.Table) -> None:
    """Once the statements of :func:`missing` have run: make the unique indexes ``table``'s unique keys, and
    drop the note of indexes to rebuild. Attaching a key takes an exclusive lock, briefly: run this once
    nothing reads the table."""
    with engine.begin() as conn:
        present = set(conn.execute(_CONSTRAINTS, {"t": table.name}).scalars())
        for constraint in _constraints(table, sa.UniqueConstraint):
            if constraint.name not in present:
                conn.execute(
                    sa.text(
                        f'ALTER TABLE "{table.name}" ADD CONSTRAINT "{constraint.name}"'
                        f' UNIQUE USING INDEX "{constraint.name}"'
                    )
                )
        if _other_indexes(conn, table):
            _comment(conn, table, None)


def _other_indexes(conn: sa.Connection, table: sa.Table) -> list[list[str]]:
    """The (name, definition) of the indexes the table's comment says are to be rebuilt."""
    note = conn.execute(
        sa.text("SELECT obj_description(to_regclass(:t), 'pg_class')"), {"t": table.name}
    ).scalar()
    return json.loads(note.removeprefix(_OTHER_INDEXES)) if note and note.startswith(_OTHER_INDEXES) else []


def _comment(conn: sa.Connection, table: sa.Table, note: str | None) -> None:
    statement = sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(table.name), sql.Literal(note))
    conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]


__all__ = ["build", "complete", "drop_secondary", "missing"]
