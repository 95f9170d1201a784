"""peewee table definitions, built per database so that stores never share class state."""

from __future__ import annotations

import peewee
from playhouse.sqlite_ext import AutoIncrementField

TABLE_NAME = "mlserver_versions"
#: Longest stored signature: a key id of up to 64 characters, ":" and 64 hex digits.
SIGNATURE_LENGTH = 160
#: Columns added after the first release: a table created before them gets them on first use.
ADDED_COLUMNS = ("signature",)


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
