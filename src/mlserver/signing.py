"""HMAC-SHA256 signatures of stored blobs, so the server never deserializes bytes it did not write.

A job signs its blob before the store records it; the service verifies the signature before
any byte is deserialized (to predict, or as the base of an update). Loading a pickle runs
code, and the sha256 column guards only against accidents: whoever can write the database
can recompute it. A signature needs a secret the database never sees.

The MAC covers the bytes and where they belong (model, key, version number, serializer
name), so a signed blob copied onto another version fails too. Several keys verify, which
allows rotation; the first one signs. A signature is stored as `<key id>:<hex digest>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping

from mlserver.errors import ConfigurationError, SignatureMismatch

__all__ = ["MIN_SECRET_BYTES", "Signer", "parse_signing_keys"]

log = logging.getLogger("mlserver.signing")

#: Shortest secret accepted; 32 random bytes (64 hex digits) are recommended.
MIN_SECRET_BYTES = 16

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# NOTE: a version tag in the MAC input lets a later format never verify as this one.
_DOMAIN = b"mlserver-blob-v1\n"


class Signer:
    """Signs blobs with the first of its keys and verifies them with any of them.

    Args:
        keys: key id -> secret (a mapping, in order, or (id, secret) pairs); the first signs.
            A secret given as text is used as its UTF-8 bytes.

    Raises:
        ConfigurationError: no keys, a malformed or repeated id, or a secret that is too short.
    """

    def __init__(self, keys: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]) -> None:
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

    def sign(self, blob: bytes, *, model: str, key: str, version: int, serializer: str) -> str:
        """The signature to store with `blob` as version `version` of `model`/`key`."""
        digest = _digest(self._secrets[self.signing_key], blob, model, key, version, serializer)
        return f"{self.signing_key}:{digest}"

    def verify(
        self,
        blob: bytes,
        signature: str | None,
        *,
        model: str,
        key: str,
        version: int,
        serializer: str,
    ) -> None:
        """Return if `signature` is a valid signature of `blob` where it is stored.

        Raises:
            SignatureMismatch: no signature, an unknown key id, or a wrong digest.
        """
        key_id, _, given = (signature or "").partition(":")
        secret = self._secrets.get(key_id)
        if not signature:
            reason, detail = "unsigned", "has no signature"
        elif secret is None:
            reason, detail = "unknown_key", "is signed with a key this server does not hold"
        else:
            expected = _digest(secret, blob, model, key, version, serializer)
            if hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
                return
            reason, detail = "mismatch", "does not match its signature"
        log.error(
            "event=signature_rejected model=%s key=%s version=%d reason=%s key_id=%s",
            model,
            key,
            version,
            reason,
            json.dumps(key_id),
        )
        raise SignatureMismatch(f"stored model {model}/{key} v{version} {detail}; not loaded")


def _digest(secret: bytes, blob: bytes, model: str, key: str, version: int, serializer: str) -> str:
    # JSON of the context is unambiguous (no field can run into the next) and ends before
    # the blob starts.
    context = json.dumps([model, key, version, serializer], separators=(",", ":")).encode()
    mac = hmac.new(secret, _DOMAIN + context + b"\n", hashlib.sha256)
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
