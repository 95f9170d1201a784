"""SQLStore's registry: listings and pages of versions and keys, aliases, and deleting or
cancelling one version. Mixed into SQLStore (mlserver.store.sql), whose plumbing it uses.

NOTE: an alias must never point at a missing version. Every transaction that moves an alias
to a version or deletes one locks that version's row first (`FOR UPDATE` on PostgreSQL;
SQLite transactions begin IMMEDIATE, with the whole database's write lock), and reads the
aliases only after it holds that lock.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

import peewee

from mlserver.errors import Conflict, InvalidPayload, KeyNotFound, NotReady
from mlserver.store._common import guarded, names, now
from mlserver.store._tables import ALIAS_LENGTH
from mlserver.store.base import SERVED, Page, Status, Version

__all__ = ["RegistryQueries"]

CANCELLED = "cancelled"


def _count(value: int | None, parameter: str, least: int) -> None:
    """InvalidPayload naming `parameter` unless it is None or a whole number >= `least`."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidPayload(
            f"{parameter} must be a whole number >= {least}, got {value!r}", parameter
        )


class RegistryQueries:
    """The versions, aliases and keys part of SQLStore."""

    # Provided by SQLStore.
    _rows: type[peewee.Model]
    _aliases: type[peewee.Model]
    _db: peewee.Database
    _watched: bool
    _forget: Any  # from LineageQueries

    _keys_sql: dict[tuple[bool, bool, bool, bool], str]

    def _q(self, name: str) -> str:
        open_, close = self._db.quote
        return f"{open_}{name}{close}"

    def _compile_keys(self, after: bool, status: bool, limit: bool, contains: bool) -> str:
        """The newest row of each key of a model, keys ascending.

        PERF: walks the (model, key, version) index in key order, and each row's "is it the
        newest" is one probe of that same index: a page costs its own size, not the
        model's key count (when a `status` filter skips few keys).
        """
        q, mark = self._q, self._db.param
        table = q(self._rows._meta.table_name)
        columns = ", ".join(f"v.{q(field.column_name)}" for field in self._meta_columns)
        model, key, version = q("model"), q("key"), q("version")
        where = [f"v.{model} = {mark}"]
        if after:
            where.append(f"v.{key} > {mark}")
        if status:
            where.append(f"v.{q('status')} = {mark}")
        if contains:
            # A plain substring, case-sensitive, with no LIKE wildcards to escape.
            find = "instr" if isinstance(self._db, peewee.SqliteDatabase) else "strpos"
            where.append(f"{find}(v.{key}, {mark}) > 0")
        # NOTE: a correlated MAX, not NOT EXISTS: PostgreSQL planned the anti-join as a scan
        # of the model's every row per key listed (3 s a page at 10,000 keys) when its
        # statistics were older than a bulk of new keys; this is one index probe per key
        # whatever the statistics say.
        where.append(
            f"v.{version} = (SELECT MAX(n.{version}) FROM {table} AS n "
            f"WHERE n.{model} = v.{model} AND n.{key} = v.{key})"
        )
        sql = f"SELECT {columns} FROM {table} AS v WHERE {' AND '.join(where)} ORDER BY v.{key}"
        return f"{sql} LIMIT {mark}" if limit else sql

    # -- shared ----------------------------------------------------------------------------

    def _compile_resolve(self) -> str:
        rows, aliases = self._rows, self._aliases
        on = (
            (aliases.model == rows.model)
            & (aliases.key == rows.key)
            & (aliases.version == rows.version)
        )
        where = (aliases.model == "") & (aliases.key == "") & (aliases.alias == "")
        sql, params = self._select().join(aliases, on=on).where(where).limit(1).sql()
        assert len(params) == 4, params
        return sql

    def _resolve_row(self, model: str, key: str, alias: str) -> dict[str, Any] | None:
        """The columns of the row `alias` points at, or None (one precompiled query)."""
        cursor = self._db.execute_sql(self._resolve_sql, [model, key, alias, 1])
        found = cursor.fetchone()
        return None if found is None else self._row_dict(found)

    def _row_dict(self, found: Iterable[Any]) -> dict[str, Any]:
        return {
            field.name: field.python_value(value)
            for field, value in zip(self._meta_columns, found, strict=True)
        }

    def _reading(self) -> Any:
        """A read-only transaction: one snapshot of rows and aliases, without SQLite's write
        lock (its transactions otherwise begin IMMEDIATE, see open_database)."""
        if isinstance(self._db, peewee.SqliteDatabase):
            return self._db.atomic(lock_type="DEFERRED")
        return self._db.atomic()

    def _locked(self, query: peewee.ModelSelect) -> peewee.ModelSelect:
        """`query` locking the rows it reads until the transaction ends (PostgreSQL; SQLite's
        transaction already holds the database's write lock)."""
        return query.for_update() if self._watched else query

    def _lock_version(self, model: str, key: str, number: int) -> dict[str, Any] | None:
        rows = self._rows
        query = self._select().where(
            (rows.model == model) & (rows.key == key) & (rows.version == number)
        )
        found = self._locked(query).dicts().first()
        return found

    def _alias_rows(self, model: str, key: str) -> peewee.ModelSelect:
        """(alias, version number) of a key's aliases, by name."""
        aliases = self._aliases
        return (
            aliases.select(aliases.alias, aliases.version)
            .where((aliases.model == model) & (aliases.key == key))
            .order_by(aliases.alias)
            .tuples()
        )

    def _alias_map(self, model: str, key: str) -> dict[int, list[str]]:
        query = self._alias_rows(model, key)
        by_number: dict[int, list[str]] = collections.defaultdict(list)
        for name, number in query:
            by_number[number].append(name)
        return by_number

    def _with_aliases(self, row: dict[str, Any], by_number: dict[int, list[str]]) -> Version:
        return self._version({**row, "aliases": by_number.get(row["version"], ())})

    def _point(self, model: str, key: str, alias: str, number: int) -> None:
        aliases = self._aliases
        aliases.insert(
            model=model, key=key, alias=alias, version=number, updated=now()
        ).on_conflict(
            conflict_target=[aliases.model, aliases.key, aliases.alias],
            update={aliases.version: number, aliases.updated: now()},
        ).execute()

    def _lock_older(self, model: str, key: str, keep: int) -> list[tuple[int, int, str]]:
        """Lock the versions of a key beyond the newest `keep`: (id, number, status).

        NOTE: locked newest first and before any alias row, the order every transaction
        here takes its locks in, so two of them never wait on each other; and locked
        before the aliases are read, so an alias moved to one of them either committed
        first (and is seen) or waits for this transaction (and finds it gone).
        """
        rows = self._rows
        older = (
            rows.select(rows.id, rows.version, rows.status)
            .where((rows.model == model) & (rows.key == key))
            .order_by(rows.version.desc())
            .offset(keep)
        )
        return list(self._locked(older).tuples())

    def _prune(self, model: str, key: str, older: list[tuple[int, int, str]]) -> int:
        """Delete the `older` versions (see _lock_older) no alias points at and not RUNNING;
        returns how many."""
        aliased = self._alias_map(model, key)
        doomed = [
            row_id
            for row_id, number, status in older
            if status != Status.RUNNING.value and number not in aliased
        ]
        if not doomed:
            return 0
        rows = self._rows
        deleted = rows.delete().where(rows.id.in_(doomed)).execute()
        self._forget(doomed)
        return deleted

    # -- Store -----------------------------------------------------------------------------

    @guarded
    def versions(
        self, model: str, key: str, *, limit: int | None = None, before: int | None = None
    ) -> Page:
        names(model, key)
        _count(limit, "limit", 1)
        _count(before, "before", 1)
        rows = self._rows
        where = (rows.model == model) & (rows.key == key)
        if before is not None:
            where &= rows.version < before
        query = self._select().where(where).order_by(rows.version.desc())
        if limit is not None:
            query = query.limit(limit + 1)
        with self._session(), self._reading():
            found = list(query.dicts())
            by_number = self._alias_map(model, key) if found else {}
        more = limit is not None and len(found) > limit
        if more:
            found = found[:limit]
        items = [self._with_aliases(row, by_number) for row in found]
        return Page(items, items[-1].version if more else None)

    @guarded
    def version(self, model: str, key: str, number: int) -> Version | None:
        names(model, key)
        rows = self._rows
        query = self._select().where(
            (rows.model == model) & (rows.key == key) & (rows.version == number)
        )
        with self._session(), self._reading():
            found = query.dicts().first()
            if found is None:
                return None
            return self._with_aliases(found, self._alias_map(model, key))

    @guarded
    def aliases(self, model: str, key: str) -> dict[str, int]:
        names(model, key)
        with self._session():
            return dict(self._alias_rows(model, key))

    @guarded
    def resolve(self, model: str, key: str, alias: str = SERVED) -> Version | None:
        names(model, key, alias)
        with self._session():
            found = self._resolve_row(model, key, alias)
        return None if found is None else self._version(found)

    @guarded
    def set_alias(self, model: str, key: str, alias: str, number: int) -> Version:
        names(model, key, alias)
        if not 0 < len(alias) <= ALIAS_LENGTH:
            raise InvalidPayload(
                f"alias must have 1 to {ALIAS_LENGTH} characters, got {len(alias)}", "alias"
            )
        with self._session(), self._db.atomic():
            found = self._lock_version(model, key, number)
            if found is None:
                raise KeyNotFound(f"model-key {key!r} of {model!r} has no version {number}")
            if found["status"] != Status.FINISHED.value:
                raise NotReady(
                    f"version {number} of {key!r} is {found['status']}; only a FINISHED "
                    "version can have an alias",
                    found["status"],
                )
            self._point(model, key, alias, number)
            return self._with_aliases(found, self._alias_map(model, key))

    @guarded
    def delete_alias(self, model: str, key: str, alias: str) -> bool:
        names(model, key, alias)
        if alias == SERVED:
            raise Conflict(
                f"the {SERVED!r} alias cannot be deleted: every key with a FINISHED version has "
                "it; move it to another version instead"
            )
        aliases = self._aliases
        where = (aliases.model == model) & (aliases.key == key) & (aliases.alias == alias)
        with self._session():
            return aliases.delete().where(where).execute() == 1

    @guarded
    def delete_version(self, model: str, key: str, number: int) -> Version:
        names(model, key)
        rows = self._rows
        with self._session(), self._db.atomic():
            found = self._lock_version(model, key, number)
            if found is None:
                raise KeyNotFound(f"model-key {key!r} of {model!r} has no version {number}")
            before = self._version(found)
            if found["status"] == Status.RUNNING.value:
                # A RUNNING version has no alias (only FINISHED ones get one); its job's
                # finish() finds it FAILED and stores nothing.
                rows.update(
                    status=Status.FAILED.value, finished=now(), lease_expires=None, error=CANCELLED
                ).where(rows.id == found["id"]).execute()
                return before
            pointing = self._alias_map(model, key).get(number)
            if pointing:
                raise Conflict(
                    f"version {number} of {key!r} is aliased as {', '.join(pointing)}: move "
                    "the alias first"
                )
            rows.delete().where(rows.id == found["id"]).execute()
            self._forget([found["id"]])
            return before

    @guarded
    def keys(
        self,
        model: str,
        *,
        limit: int | None = None,
        after: str | None = None,
        status: Status | None = None,
        contains: str | None = None,
    ) -> Page:
        names(model)
        _count(limit, "limit", 1)
        for text, parameter in ((after, "after"), (contains, "contains")):
            if text is not None and "\x00" in text:
                raise InvalidPayload(f"{parameter} must not contain NUL characters", parameter)
        if status is not None:
            try:
                status = Status(status)
            except ValueError:
                raise InvalidPayload(
                    f"status must be one of {', '.join(s.value for s in Status)}, got {status!r}",
                    "status",
                ) from None
        contains = contains or None
        shape = (after is not None, status is not None, limit is not None, contains is not None)
        sql = self._keys_sql.get(shape) or self._keys_sql.setdefault(
            shape, self._compile_keys(*shape)
        )
        params: list[Any] = [model]
        if after is not None:
            params.append(after)
        if status is not None:
            params.append(status.value)
        if contains is not None:
            params.append(contains)
        if limit is not None:
            params.append(limit + 1)
        with self._session():
            cursor = self._db.execute_sql(sql, params)
            found = [self._version(self._row_dict(row)) for row in cursor.fetchall()]
        more = limit is not None and len(found) > limit
        if more:
            found = found[:limit]
        return Page(found, found[-1].key if more else None)

    @guarded
    def key_counts(self, model: str | None = None) -> dict[str, dict[str, int]]:
        # PERF: one pass over the (model, key, version) index finds each key's newest
        # version: ~25 ms for 10,000 keys of 3 versions (benchmarks/ui.py).
        q, mark = self._q, self._db.param
        table = q(self._rows._meta.table_name)
        model_, key, version, status = q("model"), q("key"), q("version"), q("status")
        where, params = "", []
        if model is not None:
            names(model)
            where, params = f"WHERE {model_} = {mark}", [model]
        sql = (
            f"SELECT v.{model_}, v.{status}, COUNT(*) FROM {table} AS v JOIN "
            f"(SELECT {model_}, {key}, MAX({version}) AS newest FROM {table} {where} "
            f"GROUP BY {model_}, {key}) AS n ON v.{model_} = n.{model_} AND v.{key} = n.{key} "
            f"AND v.{version} = n.newest GROUP BY v.{model_}, v.{status}"
        )
        counts: dict[str, dict[str, int]] = collections.defaultdict(dict)
        with self._session():
            for name, state, count in self._db.execute_sql(sql, params).fetchall():
                counts[name][state] = count
        return dict(counts)

    @guarded
    def recent(
        self, status: Status, *, models: Iterable[str] | None = None, limit: int = 50
    ) -> list[Version]:
        _count(limit, "limit", 1)
        rows = self._rows
        where = rows.status == Status(status).value
        if models is not None:
            where &= rows.model.in_(list(models))
        query = self._select().where(where).order_by(rows.id.desc()).limit(limit)
        with self._session():
            return [self._version(row) for row in query.dicts()]
