"""The schema version of a store's database, and the steps that bring an older one up to it.

Version 1 is what release 0.1.0 created (a versions table and nothing to say so); version 2
adds the aliases table, the `metrics` and `attempts` columns, and the schema table itself;
version 3 adds the stored training data (the datasets and links tables) and the `lineage`
and `job` columns. A fresh database is created at SCHEMA_VERSION directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from mlserver.errors import ConfigurationError
from mlserver.store._common import now
from mlserver.store._tables import (
    ADDED_COLUMNS,
    ALIAS_TABLE,
    DATASET_TABLE,
    LINK_TABLE,
    SCHEMA_TABLE,
    TABLE_NAME,
    add_missing_columns,
)
from mlserver.store.base import SERVED, Status

__all__ = ["SCHEMA_VERSION", "prepare", "schema_version"]

SCHEMA_VERSION = 3
#: The tables a database at SCHEMA_VERSION has.
_TABLES = {TABLE_NAME, ALIAS_TABLE, SCHEMA_TABLE, DATASET_TABLE, LINK_TABLE}
#: Any constant both sides agree on: the PostgreSQL advisory lock migrating processes share.
_MIGRATION_LOCK = 0x6D6C7372  # "mlsr"


def schema_version(db: peewee.Database) -> int | None:
    """The database's schema version: None when it holds no store yet, 1 for a 0.1.0 one."""
    tables = set(db.get_tables())
    if SCHEMA_TABLE in tables:
        found = db.execute_sql(f"SELECT MAX(version) FROM {SCHEMA_TABLE}").fetchone()
        if found and found[0] is not None:
            return int(found[0])
    return 1 if TABLE_NAME in tables else None


def _refuse_newer(version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"database schema version {version} is newer than this mlserver's "
            f"({SCHEMA_VERSION}): upgrade mlserver"
        )


@contextlib.contextmanager
def _exclusive(db: peewee.Database) -> Iterator[None]:
    """A transaction no other process migrates beside: PostgreSQL's DDL is transactional
    and an advisory lock held to its end serialises migrators; on SQLite, BEGIN IMMEDIATE
    takes the database's write lock up front (the other waits its busy timeout)."""
    if isinstance(db, peewee.SqliteDatabase):
        with db.atomic(lock_type="IMMEDIATE"):
            yield
        return
    with db.atomic():
        if isinstance(db, peewee.PostgresqlDatabase):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        yield


def prepare(db: peewee.Database, tables: list[type[peewee.Model]]) -> int | None:
    """Create the store's tables, or migrate them, on a connection `db` holds; returns the
    version found (None when fresh). `tables` are the versions, aliases, schema, datasets
    and links models.

    Raises ConfigurationError for a database newer than SCHEMA_VERSION.
    """
    rows = tables[0]
    found = schema_version(db)
    _refuse_newer(found)
    if found == SCHEMA_VERSION and set(db.get_tables()) >= _TABLES:
        add_missing_columns(db, rows)
        return found
    with _exclusive(db):
        # Looked at again under the lock: another process may have done it meanwhile.
        found = schema_version(db)
        _refuse_newer(found)
        present = set(db.get_tables())
        if found is None or TABLE_NAME not in present:
            _create(db, tables)
        else:
            if found == 1:
                _migrate_1_to_2(db, tables)
            # 2 -> 3, and a table a crash or a hand left missing: created if absent.
            _migrate_2_to_3(db, tables)
    add_missing_columns(db, rows)
    return found


def _create(db: peewee.Database, tables: list[type[peewee.Model]]) -> None:
    _, aliases, schema, datasets, links = tables
    db.create_tables(tables, safe=True)
    # NOTE: without versions no alias can point anywhere: any left from a dropped versions
    # table would name versions that new rows reuse the numbers of.
    aliases.delete().execute()
    links.delete().execute()  # as for aliases: they would name reused version ids
    datasets.delete().execute()
    _write_version(schema)


def _write_version(schema: type[peewee.Model], version: int = SCHEMA_VERSION) -> None:
    schema.delete().execute()
    schema.create(version=version)


def _add_columns(db: peewee.Database, rows: type[peewee.Model]) -> None:
    """The columns of ADDED_COLUMNS the versions table lacks, in the migration's transaction."""
    present = {column.name for column in db.get_columns(TABLE_NAME)}
    migrator = SchemaMigrator.from_database(db)
    migrate(
        *(
            migrator.add_column(TABLE_NAME, name, rows._meta.fields[name])
            for name in ADDED_COLUMNS
            if name not in present
        )
    )


def _migrate_1_to_2(db: peewee.Database, tables: list[type[peewee.Model]]) -> None:
    """0.1.0 -> 2: the new columns, the aliases table, every key's `served` at its newest
    FINISHED version (what 0.1.0 predicted with), and the schema version."""
    rows, aliases, schema, _, _ = tables
    _add_columns(db, rows)
    db.create_tables([aliases, schema], safe=True)
    newest = (
        rows.select(
            rows.model,
            rows.key,
            peewee.Value(SERVED),
            peewee.fn.MAX(rows.version),
            peewee.Value(now()),
        )
        .where(rows.status == Status.FINISHED.value)
        .group_by(rows.model, rows.key)
    )
    aliases.delete().where(aliases.alias == SERVED).execute()
    aliases.insert_from(
        newest, [aliases.model, aliases.key, aliases.alias, aliases.version, aliases.updated]
    ).execute()
    # The indexes of the current definition (none is new in 2, but creating is safe).
    db.create_tables([rows], safe=True)
    _write_version(schema, 2)


def _migrate_2_to_3(db: peewee.Database, tables: list[type[peewee.Model]]) -> None:
    """2 -> 3: the datasets and links tables and the `lineage` and `job` columns; versions
    stored before have no stored data (their lineage is read from their metadata)."""
    rows, aliases, schema, datasets, links = tables
    _add_columns(db, rows)
    db.create_tables([aliases, datasets, links], safe=True)
    _write_version(schema)
