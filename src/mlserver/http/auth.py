"""Optional bearer-token auth: which scope each route needs, and the middleware that checks it.

Tokens are never stored: the server keeps the sha256 of each (`hash_token`) with its scopes,
and compares the hash of a presented token with every stored hash in constant time.

| request | scope (any one of) |
|---|---|
| `GET /health`, `GET /ready` | none: always open |
| `POST /{model}` | predict |
| `GET /{model}?model-key=...` | predict or train (a trainer polls what it started) |
| `PUT /{model}`, `PATCH /{model}` | train |
| `DELETE /{model}`, `GET /{model}` (the key list), `/models`, `/openapi.json`, `/metrics` | admin |
| `GET /{model}/{key}/versions[/{n}]`, `GET /{model}/{key}/aliases` | predict or train |
| `PUT`/`DELETE /{model}/{key}/aliases/{alias}`, `DELETE /{model}/{key}/versions/{n}` | train |
| `GET /{model}/{key}/versions/{n}/data`, `/artifact`; `PUT /{model}/import` | admin |
| `POST /{model}/{key}/refit` | train |
| `GET /v2`, `/v2/health/live`, `/v2/health/ready` | none: always open |
| `GET /v2/models/{name}[/versions/{v}][/ready]` | predict or train |
| `POST /v2/models/{name}[/versions/{v}]/infer` | predict |
| `OPTIONS /{model}` | any valid token |
| `/ui`, `/ui/...` (the dashboard) | checked by the dashboard (mlserver.http.ui) |
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import falcon

from mlserver.errors import ConfigurationError
from mlserver.http.parameters import KEY_NAMES

__all__ = [
    "SCOPES",
    "Authenticator",
    "Tokens",
    "bearer_token",
    "hash_token",
    "load_token_file",
    "parse_tokens",
    "required_scopes",
]

#: Every scope a token can hold.
SCOPES = ("predict", "train", "admin")

_OPEN_ROUTES = frozenset(
    {"/health", "/ready", "/v2", "/v2/", "/v2/health/live", "/v2/health/ready"}
)
#: V2's model metadata and readiness are reading (predict's or train's), its infer predict's.
_V2_INFER = frozenset({"/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"})
_V2_MODEL = frozenset(
    {
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
    }
)
_ADMIN_ROUTES = frozenset({"/models", "/openapi.json", "/metrics"})
_MODEL_SCOPES = {
    "POST": frozenset({"predict"}),
    "PUT": frozenset({"train"}),
    "PATCH": frozenset({"train"}),
    "DELETE": frozenset({"admin"}),
}
#: The routes of a key's history and aliases: reading them is predict's or train's,
#: changing them (moving an alias, deleting or cancelling a version) train's.
_HISTORY_ROUTES = frozenset(
    {
        "/{model}/{key}/versions",
        "/{model}/{key}/versions/{n}",
        "/{model}/{key}/aliases",
        "/{model}/{key}/aliases/{alias}",
    }
)
#: Reading the rows a version learnt from, a version's bytes, and importing models trained
#: elsewhere are admin's; a refit is training.
_ADMIN_MODEL_ROUTES = frozenset(
    {"/{model}/{key}/versions/{n}/data", "/{model}/{key}/versions/{n}/artifact", "/{model}/import"}
)
_REFIT_ROUTE = "/{model}/{key}/refit"
#: The dashboard checks its own token (a cookie, or the bearer header) and scopes.
_UI = "/ui"
_HASH = re.compile(r"[0-9a-f]{64}")
_ANY = frozenset[str]()


def hash_token(token: str) -> str:
    """The sha256 hex digest of a token: what a token file or `tokens=` holds."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(req: falcon.Request) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" without one)."""
    scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _is_ui(route: str | None) -> bool:
    return route is not None and (route == _UI or route.startswith(_UI + "/"))


def required_scopes(method: str, route: str | None, *, has_key: bool) -> frozenset[str] | None:
    """Scopes any one of which admits the request; None for open routes, empty for "any
    valid token". `route` is the matched URI template (e.g. "/{model}")."""
    if route in _OPEN_ROUTES or _is_ui(route):
        return None
    if route in _ADMIN_ROUTES:
        return frozenset({"admin"})
    if route in _ADMIN_MODEL_ROUTES:
        return frozenset({"admin"})
    if route in _V2_INFER:
        return frozenset({"predict"}) if method == "POST" else _ANY
    if route in _V2_MODEL:
        return frozenset({"predict", "train"}) if method in ("GET", "HEAD") else _ANY
    if route == _REFIT_ROUTE:
        return frozenset({"train"}) if method == "POST" else _ANY
    if route in _HISTORY_ROUTES:
        if method in ("GET", "HEAD"):
            return frozenset({"predict", "train"})
        return frozenset({"train"}) if method in ("PUT", "DELETE") else _ANY
    if route != "/{model}":
        return _ANY
    if method in ("GET", "HEAD"):
        return frozenset({"predict", "train"}) if has_key else frozenset({"admin"})
    return _MODEL_SCOPES.get(method, _ANY)


class Tokens:
    """Accepted token hashes and their scopes.

    Args:
        entries: sha256 hex of a token -> its scopes (an iterable, or "predict,train" text).

    Raises:
        ConfigurationError: no entries, a value that is not a sha256 hex digest (a plain
            token, most likely: hash it with `hash_token`), or an unknown scope.
    """

    def __init__(self, entries: Mapping[str, str | Iterable[str]]) -> None:
        self._entries: list[tuple[bytes, frozenset[str]]] = []
        for digest, scopes in entries.items():
            normal = digest.strip().lower()
            if not _HASH.fullmatch(normal):
                raise ConfigurationError(
                    "a token entry is not a sha256 hex digest; store hash_token(token), never "
                    "the token itself"
                )
            names = scopes.split(",") if isinstance(scopes, str) else list(scopes)
            found = frozenset(name.strip() for name in names if name.strip())
            unknown = sorted(found - set(SCOPES))
            if unknown or not found:
                raise ConfigurationError(
                    f"token {normal[:8]}… has scopes {sorted(found) or 'none'}; "
                    f"each must be one of {', '.join(SCOPES)}"
                )
            self._entries.append((normal.encode(), found))
        if not self._entries:
            raise ConfigurationError("no tokens given; pass tokens=None to turn auth off")

    def __len__(self) -> int:
        return len(self._entries)

    def scopes_of(self, token: str) -> frozenset[str] | None:
        """The token's scopes, or None if it is not one of ours.

        Every stored hash is compared, in constant time, whether or not one matched already.
        """
        presented = hash_token(token).encode()
        found: frozenset[str] | None = None
        for digest, scopes in self._entries:
            if hmac.compare_digest(presented, digest):
                found = scopes
        return found


def parse_tokens(text: str) -> dict[str, frozenset[str]]:
    """Token hashes and scopes from `<sha256-hex> <scope>[,<scope>...]` entries, one per line
    (or separated by `;`, for an environment variable); `#` starts a comment line.

    Raises:
        ConfigurationError: a malformed entry (named by its number, never echoed).
    """
    entries: dict[str, frozenset[str]] = {}
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for number, entry in enumerate(";".join(lines).split(";"), 1):
        fields = entry.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ConfigurationError(
                f"token entry {number} must be '<sha256-hex> <scope>[,<scope>...]'"
            )
        digest, scopes = fields[0].lower(), frozenset(fields[1].split(","))
        if digest in entries:
            raise ConfigurationError(f"token entry {number} repeats an earlier token hash")
        entries[digest] = scopes
    Tokens(entries)  # the same checks as create_app's, with the same messages
    return entries


def load_token_file(path: str | Path) -> dict[str, frozenset[str]]:
    """`parse_tokens` of a file's text.

    Raises:
        ConfigurationError: the file cannot be read, or holds a malformed entry.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read token file {str(path)!r}: {exc.strerror}") from None
    try:
        return parse_tokens(text)
    except ConfigurationError as exc:
        raise ConfigurationError(f"token file {str(path)!r}: {exc}") from None


class Authenticator:
    """Falcon middleware: 401 without a valid bearer token, 403 when it lacks the scope.

    Runs once the route is known (the scope depends on it); requests that match no route
    are 404 whatever the token, and reveal nothing but that.
    """

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict
    ) -> None:
        has_key = any(name in req.params for name in KEY_NAMES)
        required = required_scopes(req.method, req.uri_template, has_key=has_key)
        if required is None:
            return
        token = bearer_token(req)
        if not token:
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="this request needs an 'Authorization: Bearer <token>' header",
                challenges=['Bearer realm="mlserver"'],
            )
        scopes = self.tokens.scopes_of(token)
        if scopes is None:
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="the bearer token is not valid",
                challenges=['Bearer realm="mlserver", error="invalid_token"'],
            )
        # NOTE: the hash prefix names the token in the access log; it reveals nothing usable.
        req.context.token = hash_token(token)[:8]
        if required and not required & scopes:
            needed = " or ".join(repr(scope) for scope in sorted(required))
            raise falcon.HTTPForbidden(
                title="Forbidden",
                description=f"this request needs a token with the {needed} scope",
                headers={
                    "WWW-Authenticate": 'Bearer realm="mlserver", error="insufficient_scope", '
                    f'scope="{" ".join(sorted(required))}"'
                },
            )
