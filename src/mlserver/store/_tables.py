"""The tables: versions, aliases, the schema version, and the stored training data with its
links to versions, as peewee definitions built per database (so that stores never share class
state); the columns later releases added; and a row read back as a Version."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import orjson
import peewee
from playhouse.migrate import SchemaMigrator, migrate
from playhouse.sqlite_ext import AutoIncrementField

from mlserver.store.base import Status, Version

__all__ = [
    "ADDED_COLUMNS",
    "ALIAS_LENGTH",
    "ALIAS_TABLE",
    "DATASET_TABLE",
    "LINK_TABLE",
    "SCHEMA_TABLE",
    "TABLE_NAME",
    "add_missing_columns",
    "make_alias_table",
    "make_dataset_table",
    "make_link_table",
    "make_schema_table",
    "make_version_table",
    "version_from_row",
]

TABLE_NAME = "mlserver_versions"
ALIAS_TABLE = "mlserver_aliases"
SCHEMA_TABLE = "mlserver_schema"
DATASET_TABLE = "mlserver_datasets"
LINK_TABLE = "mlserver_version_data"
#: Longest alias name.
ALIAS_LENGTH = 128
#: Longest stored signature: a key id of up to 64 characters, ":" and 64 hex digits.
SIGNATURE_LENGTH = 160
#: Columns added after the first release: a table created before them gets them on first use.
ADDED_COLUMNS = ("signature", "metrics", "attempts", "lineage", "job")


def make_version_table(db: peewee.Database) -> type[peewee.Model]:
    """A fresh Model class bound to `db` (binding a shared class would be global state)."""

    # NOTE: ids must never be reused (plain SQLite rowids are, after a delete): a job that
    # outlived the DELETE of its version must not finish a newer row that got the same id.
    id_field = AutoIncrementField if isinstance(db, peewee.SqliteDatabase) else peewee.AutoField

    class VersionRow(peewee.Model):
        id = id_field()
        model = peewee.CharField(max_length=128)
        key = peewee.CharField(max_length=128)
        version = peewee.IntegerField()
        status = peewee.CharField(max_length=16)
        created = peewee.DateTimeField()
        started = peewee.DateTimeField(null=True)
        finished = peewee.DateTimeField(null=True)
        lease_expires = peewee.DateTimeField(null=True)
        worker = peewee.CharField(max_length=255, null=True)
        serializer = peewee.CharField(max_length=64, null=True)
        sha256 = peewee.CharField(max_length=64, null=True)
        # "<key id>:<hex HMAC-SHA256>" when the server signs blobs (mlserver.signing).
        signature = peewee.CharField(max_length=SIGNATURE_LENGTH, null=True)
        size = peewee.BigIntegerField(null=True)
        error = peewee.TextField(null=True)
        metadata = peewee.TextField(default="{}")
        # JSON; NULL (every row 0.1.0 wrote) reads as {}.
        metrics = peewee.TextField(null=True)
        # NULL (every row 0.1.0 wrote) reads as 1.
        attempts = peewee.IntegerField(null=True)
        # JSON; NULL (rows written before schema 3, or before their inputs) reads as {}.
        lineage = peewee.TextField(null=True)
        # JSON: how to run the job again; NULL when its inputs are not stored.
        job = peewee.TextField(null=True)
        blob = peewee.BlobField(null=True)

        class Meta:
            database = db
            table_name = TABLE_NAME
            indexes = ((("model", "key", "version"), True),)

    # NOTE: the database itself guarantees at most one RUNNING version per key, so several
    # processes sharing it can never train the same key twice at once.
    VersionRow.add_index(
        peewee.ModelIndex(
            VersionRow,
            (VersionRow.model, VersionRow.key),
            unique=True,
            where=(VersionRow.status == "RUNNING"),
            name=f"{TABLE_NAME}_one_running",
        )
    )
    return VersionRow


def make_alias_table(db: peewee.Database) -> type[peewee.Model]:
    """Named pointers at version NUMBERS of one key (`served` among them)."""

    class AliasRow(peewee.Model):
        model = peewee.CharField(max_length=128)
        key = peewee.CharField(max_length=128)
        alias = peewee.CharField(max_length=ALIAS_LENGTH)
        version = peewee.IntegerField()
        updated = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = ALIAS_TABLE
            indexes = ((("model", "key", "alias"), True),)

    return AliasRow


def make_schema_table(db: peewee.Database) -> type[peewee.Model]:
    """One row: the schema version the database is at (see mlserver.store.migrations)."""

    class SchemaRow(peewee.Model):
        version = peewee.IntegerField()

        class Meta:
            database = db
            table_name = SCHEMA_TABLE

    return SchemaRow


def make_dataset_table(db: peewee.Database) -> type[peewee.Model]:
    """Training datasets, one row per distinct content (mlserver.frames.stored)."""

    class DatasetRow(peewee.Model):
        sha256 = peewee.CharField(max_length=64, primary_key=True)
        format = peewee.CharField(max_length=64)
        rows = peewee.BigIntegerField()
        columns = peewee.IntegerField()
        raw_bytes = peewee.BigIntegerField()
        size = peewee.BigIntegerField()
        # sha256 of `blob`, checked when it is read back.
        checksum = peewee.CharField(max_length=64)
        created = peewee.DateTimeField()
        blob = peewee.BlobField()

        class Meta:
            database = db
            table_name = DATASET_TABLE

    return DatasetRow


def make_link_table(db: peewee.Database) -> type[peewee.Model]:
    """Which datasets a version learnt from, in training order: a dataset lives while a row
    here names it."""

    class LinkRow(peewee.Model):
        version_id = peewee.BigIntegerField()
        position = peewee.IntegerField()
        sha256 = peewee.CharField(max_length=64, index=True)

        class Meta:
            database = db
            table_name = LINK_TABLE
            primary_key = peewee.CompositeKey("version_id", "position")

    return LinkRow


def add_missing_columns(db: peewee.Database, rows: type[peewee.Model]) -> None:
    """Add the columns a table created by an older release lacks (all nullable)."""
    present = {column.name for column in db.get_columns(TABLE_NAME)}
    migrator = SchemaMigrator.from_database(db)
    for name in ADDED_COLUMNS:
        if name in present:
            continue
        try:
            migrate(migrator.add_column(TABLE_NAME, name, rows._meta.fields[name]))
        except (peewee.OperationalError, peewee.ProgrammingError):
            # Another process added it between our look and our ALTER TABLE.
            if name not in {column.name for column in db.get_columns(TABLE_NAME)}:
                raise


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=timezone.utc)


def version_from_row(data: Mapping[str, Any]) -> Version:
    """A Version from column values; a freshly created row lacks its unset columns."""
    return Version(
        id=data["id"],
        model=data["model"],
        key=data["key"],
        version=data["version"],
        status=Status(data["status"]),
        created=_aware(data["created"]),
        started=_aware(data.get("started")),
        finished=_aware(data.get("finished")),
        serializer=data.get("serializer"),
        sha256=data.get("sha256"),
        signature=data.get("signature"),
        size=data.get("size"),
        error=data.get("error"),
        worker=data.get("worker"),
        metadata=orjson.loads(data.get("metadata") or "{}"),
        metrics=orjson.loads(data.get("metrics") or "{}"),
        aliases=tuple(data.get("aliases", ())),
        attempts=data.get("attempts") or 1,
        lineage=orjson.loads(data.get("lineage") or "{}"),
        job=orjson.loads(data.get("job") or "{}"),
    )
