"""HMAC-SHA256 signatures of stored blobs, so the server never deserializes bytes it did not write.

A job signs its blob before the store records it; the service verifies the signature before
any byte is deserialized (to predict, or as the base of an update). Loading a pickle runs
code, and the sha256 column guards only against accidents: whoever can write the database
can recompute it. A signature needs a secret the database never sees.

The MAC covers the bytes, where they belong (model, key, version number) and what never
repeats: the row id (never reused: AUTOINCREMENT on SQLite, a sequence on PostgreSQL) and
the row's creation time, so a signed blob saved from a deleted key does not verify on the
new row that later gets the same version number. It also covers the metadata that decides
how the bytes are read and used: the serializer name and the `SIGNED_METADATA` entries
(training schema, target names, library versions). A signature is stored as
`<key id>:v2:<hex digest>`.

Signatures of release 0.1.0 (`<key id>:<hex digest>`, covering model, key, version and
serializer only) still verify unless `legacy=False`, with a warning: the service re-signs
them in the current form when it loads them. Several keys verify, which allows rotation;
the first one signs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from mlserver.errors import ConfigurationError, SignatureMismatch
from mlserver.store.base import Version

__all__ = [
    "MIN_SECRET_BYTES",
    "SIGNED_METADATA",
    "Placement",
    "Signer",
    "Verified",
    "parse_signing_keys",
]

log = logging.getLogger("mlserver.signing")

#: Shortest secret accepted; 32 random bytes (64 hex digits) are recommended.
MIN_SECRET_BYTES = 16

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Metadata entries a signature covers: what the service reads to load and use the bytes.
SIGNED_METADATA = ("features", "targets", "libraries")

# NOTE: a version tag in the MAC input lets a later format never verify as an earlier one.
_DOMAIN_V1 = b"mlserver-blob-v1\n"
_DOMAIN = b"mlserver-blob-v2\n"
_FORMAT = "v2"


@dataclass(frozen=True)
class Placement:
    """Where a blob is stored: everything a signature binds besides the bytes."""

    model: str
    key: str
    version: int
    serializer: str
    row_id: int
    created: datetime
    metadata: Mapping[str, Any]

    @classmethod
    def of(
        cls,
        version: Version,
        serializer: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Placement:
        """Where `version` is stored; `serializer` and `metadata` as a job is about to write
        them, else as the row holds them."""
        return cls(
            version.model,
            version.key,
            version.version,
            str(version.serializer) if serializer is None else serializer,
            version.id,
            version.created,
            version.metadata if metadata is None else metadata,
        )


@dataclass(frozen=True)
class Verified:
    """A signature that verified; `legacy` when it has the 0.1.0 form (to be re-signed)."""

    legacy: bool = False


class Signer:
    """Signs blobs with the first of its keys and verifies them with any of them.

    Args:
        keys: key id -> secret (a mapping, in order, or (id, secret) pairs); the first signs.
            A secret given as text is used as its UTF-8 bytes.
        legacy: whether signatures of release 0.1.0 still verify (with a warning).

    Raises:
        ConfigurationError: no keys, a malformed or repeated id, or a secret that is too short.
    """

    def __init__(
        self,
        keys: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]],
        *,
        legacy: bool = True,
    ) -> None:
        #: Accept signatures of the 0.1.0 form (they do not bind the row: a saved blob of a
        #: deleted key verifies on the key's new version of the same number).
        self.legacy = legacy
        pairs = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if not pairs:
            raise ConfigurationError("signing needs at least one key")
        self._secrets: dict[str, bytes] = {}
        for key_id, secret in pairs:
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError(
                    f"signing key id {key_id!r} must be 1 to 64 letters, digits, '.', '_' or '-'"
                )
            if key_id in self._secrets:
                raise ConfigurationError(f"signing key id {key_id!r} is given twice")
            raw = secret.encode() if isinstance(secret, str) else bytes(secret)
            if len(raw) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"signing key {key_id!r} is shorter than {MIN_SECRET_BYTES} bytes"
                )
            self._secrets[key_id] = raw
        #: The id of the key new blobs are signed with.
        self.signing_key = pairs[0][0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id that verifies, the signing one first."""
        return tuple(self._secrets)

    def __repr__(self) -> str:  # never the secrets
        return f"Signer(key_ids={self.key_ids!r})"

    def sign(self, blob: bytes, where: Placement) -> str:
        """The signature to store with `blob` at `where`."""
        context = _context(where)
        digest = _digest(self._secrets[self.signing_key], _DOMAIN, context, blob)
        return f"{self.signing_key}:{_FORMAT}:{digest}"

    def verify(self, blob: bytes, signature: str | None, where: Placement) -> Verified:
        """Return if `signature` is a valid signature of `blob` stored at `where`.

        Raises:
            SignatureMismatch: no signature, an unknown key id, a wrong digest, or a 0.1.0
                signature when those are not accepted.
        """
        key_id, _, rest = (signature or "").partition(":")
        form, colon, given = rest.partition(":")
        if not colon:  # 0.1.0: "<key id>:<hex digest>"
            form, given = "v1", rest
        secret = self._secrets.get(key_id)
        if not signature:
            reason, detail = "unsigned", "has no signature"
        elif secret is None:
            reason, detail = "unknown_key", "is signed with a key this server does not hold"
        elif form == "v1" and not self.legacy:
            reason, detail = "legacy", "has a signature of release 0.1.0, which are refused"
        elif form not in ("v1", _FORMAT):
            reason, detail = "unknown_format", "has a signature of an unknown format"
        else:
            if form == _FORMAT:
                context = _context(where)
                expected = _digest(secret, _DOMAIN, context, blob)
            else:
                context = [where.model, where.key, where.version, where.serializer]
                expected = _digest(secret, _DOMAIN_V1, context, blob)
            if hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
                if form == "v1":
                    log.warning(
                        "event=signature_legacy model=%s key=%s version=%d key_id=%s detail=%r",
                        where.model,
                        where.key,
                        where.version,
                        json.dumps(key_id),
                        "signed in the 0.1.0 form, which does not bind the row; re-signed",
                    )
                return Verified(legacy=form == "v1")
            reason, detail = "mismatch", "does not match its signature"
        log.error(
            "event=signature_rejected model=%s key=%s version=%d reason=%s key_id=%s",
            where.model,
            where.key,
            where.version,
            reason,
            json.dumps(key_id),
        )
        stored = f"{where.model}/{where.key} v{where.version}"
        raise SignatureMismatch(f"stored model {stored} {detail}; not loaded")


def _context(where: Placement) -> list[Any]:
    """What a signature binds besides the bytes, in a form that survives the store: the
    metadata as its JSON reads back (the store writes it with `default=str`)."""
    created = where.created
    if created.tzinfo is not None:
        created = created.astimezone(timezone.utc).replace(tzinfo=None)
    loading = orjson.loads(
        orjson.dumps({name: where.metadata.get(name) for name in SIGNED_METADATA}, default=str)
    )
    return [
        where.model,
        where.key,
        where.version,
        where.serializer,
        where.row_id,
        created.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        loading,
    ]


def _digest(secret: bytes, domain: bytes, context: list[Any], blob: bytes) -> str:
    # JSON of the context (keys sorted) is unambiguous (no field can run into the next) and
    # ends before the blob starts.
    text = orjson.dumps(context, option=orjson.OPT_SORT_KEYS)
    if domain == _DOMAIN_V1:  # NOTE: exactly the bytes release 0.1.0 signed
        text = json.dumps(context, separators=(",", ":")).encode()
    mac = hmac.new(secret, domain + text + b"\n", hashlib.sha256)
    mac.update(blob)
    return mac.hexdigest()


def parse_signing_keys(text: str) -> list[tuple[str, str]]:
    """(id, secret) pairs from `id:secret` entries separated by commas, spaces or newlines.

    Lines starting with `#` are comments (for key files). Messages never echo a secret.

    Raises:
        ConfigurationError: an entry without `id:` or without a secret, or no entry at all.
    """
    pairs = []
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for number, entry in enumerate(re.split(r"[\s,]+", " ".join(lines).strip()), 1):
        if not entry:
            continue
        key_id, colon, secret = entry.partition(":")
        if not colon or not key_id or not secret:
            raise ConfigurationError(f"signing key entry {number} is not of the form id:secret")
        pairs.append((key_id, secret))
    if not pairs:
        raise ConfigurationError("no signing keys given (expected id:secret entries)")
    return pairs
