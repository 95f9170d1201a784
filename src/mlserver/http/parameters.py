"""The HTTP contract of `/{model}` in one table: which verb runs which service operation, and
which parameters each verb takes, from where. Request parsing, auth and the OpenAPI document
all read it, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mlserver.errors import InvalidPayload
from mlserver.store.base import PROMOTE

__all__ = [
    "BODY",
    "KEY_NAMES",
    "LISTING",
    "PARAMETERS",
    "QUERY",
    "TABLE",
    "TABLE_QUERY",
    "Parameter",
    "accepted",
    "given",
    "key_schema",
    "merge_body",
    "operation_of",
    "taken_by",
    "verbs_of",
]

#: The verb of each service operation, in the order `Allow` and `/models` list them.
_VERBS = (
    ("status", "GET"),
    ("fit", "PUT"),
    ("predict", "POST"),
    ("update", "PATCH"),
    ("delete", "DELETE"),
)

#: A member of the JSON object body.
BODY = "body"
#: The query string, with any body (query values are text: JSON text for x, y and kwargs).
QUERY = "query"
#: The CSV, Arrow or Parquet body itself (x; y through `target`).
TABLE = "table"
#: The query string, and only beside a CSV, Arrow or Parquet body.
TABLE_QUERY = "table-query"

_REF = "#/components/schemas/"


@dataclass(frozen=True)
class Parameter:
    """One request parameter of `/{model}`."""

    name: str
    #: The verbs that take it.
    verbs: tuple[str, ...]
    #: Where it may come from: BODY, QUERY, TABLE, TABLE_QUERY.
    sources: frozenset[str]
    description: str
    #: Its JSON Schema in a JSON body, built fresh per call.
    body_schema: Callable[[], dict[str, Any]]
    #: Its JSON Schema in the query string (text), built fresh per call; None: documented in
    #: the body only (x and y are read from the query string too, as JSON text).
    query_schema: Callable[[], dict[str, Any]] | None = None
    #: Other names the server reads as this parameter (they must agree when both are given).
    aliases: tuple[str, ...] = ()
    #: Required in a JSON body (a table body carries it instead).
    required: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def _ref(name: str) -> Callable[[], dict[str, Any]]:
    return lambda: {"$ref": _REF + name}


def _string(**facets: Any) -> Callable[[], dict[str, Any]]:
    """A string schema; a tuple facet (an enum) becomes a new list in each schema built."""
    return lambda: {
        "type": "string",
        **{name: list(v) if isinstance(v, tuple) else v for name, v in facets.items()},
    }


_RETRAIN_TEXT = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"
_JSON_BODY = frozenset({BODY, QUERY})


def _kwargs() -> dict[str, Any]:
    return {"type": ["object", "string"], "description": "Keyword arguments (or their JSON text)."}


def _retrain() -> dict[str, Any]:
    return {"oneOf": [{"type": "boolean"}, {"type": "string", "pattern": _RETRAIN_TEXT}]}


def _fraction() -> dict[str, Any]:
    return {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5}


def _page_size() -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": 1000}


def _positive() -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def key_schema() -> dict[str, Any]:
    """A model-key's schema, in requests and in answers alike."""
    return {"type": "string", "description": "The key a PUT returned."}


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "x",
        ("PUT", "POST", "PATCH"),
        frozenset({BODY, QUERY, TABLE}),
        "Features: a DataFrame as pandas JSON, or the whole CSV, Arrow or Parquet body.",
        _ref("Frame"),
        required=True,
    ),
    Parameter(
        "y",
        ("PUT", "PATCH"),
        frozenset({BODY, QUERY, TABLE}),
        "Target: a Series or DataFrame as pandas JSON, or the `target` columns of a table body.",
        _ref("Frame"),
    ),
    Parameter(
        "orient",
        ("PUT", "POST", "PATCH"),
        _JSON_BODY,
        "The pandas orient of x and y (of the answer, for a table body: split by default).",
        _ref("Orient"),
        _ref("Orient"),
    ),
    Parameter(
        "modkwargs",
        ("PUT",),
        _JSON_BODY,
        "Keyword arguments of the wrapper's make_model (JSON text in the query string).",
        _kwargs,
        _string(),
    ),
    Parameter(
        "algkwargs",
        ("PUT",),
        _JSON_BODY,
        "Keyword arguments of the wrapper's fit (JSON text in the query string).",
        _kwargs,
        _string(),
    ),
    Parameter(
        "retrain",
        ("PUT",),
        _JSON_BODY,
        "Train a new version even if one has finished.",
        _retrain,
        _string(pattern=_RETRAIN_TEXT),
    ),
    Parameter(
        "name",
        ("PUT",),
        _JSON_BODY,
        "Derive the key from this name instead of from the data.",
        _string(minLength=1),
        _string(minLength=1),
    ),
    Parameter(
        "method",
        ("POST",),
        _JSON_BODY,
        "The prediction method: predict by default (or the model's only one).",
        _ref("Method"),
        _ref("Method"),
    ),
    Parameter(
        "promote",
        ("PUT", "PATCH"),
        _JSON_BODY,
        "When the new version becomes `served`: always (default), if-better (its validation "
        "score is at least the served one's) or never (a candidate).",
        _string(enum=PROMOTE),
        _string(enum=PROMOTE),
    ),
    Parameter(
        "validation",
        ("PUT",),
        _JSON_BODY,
        "Hold out this share of the rows (in (0, 0.5]; stratified for classifiers), fit on the "
        "rest and store the held-out score in metrics.validation.",
        _fraction,
        _string(),
    ),
    Parameter(
        "scoring",
        ("PUT",),
        _JSON_BODY,
        "A scikit-learn scorer name for validation and prequential scores (default: the "
        "model's own score).",
        _string(minLength=1),
        _string(minLength=1),
    ),
    Parameter(
        "version",
        ("POST",),
        _JSON_BODY,
        "Predict with this version number instead of the served one.",
        _positive,
        _string(pattern="^[0-9]+$"),
    ),
    Parameter(
        "alias",
        ("POST",),
        _JSON_BODY,
        "Predict with the version this alias names instead of the served one.",
        _string(minLength=1),
        _string(minLength=1),
    ),
    Parameter(
        "limit",
        ("GET",),
        frozenset({QUERY}),
        "Key listing (without model-key): at most this many keys (1..1000; default 1000).",
        _page_size,
        _string(pattern="^[0-9]+$"),
    ),
    Parameter(
        "after",
        ("GET",),
        frozenset({QUERY}),
        "Key listing: only keys after this one (the `next` of the previous page).",
        key_schema,
        key_schema,
    ),
    Parameter(
        "status",
        ("GET",),
        frozenset({QUERY}),
        "Key listing: only keys whose newest version has this status.",
        _string(enum=("RUNNING", "FINISHED", "FAILED")),
        _string(enum=("RUNNING", "FINISHED", "FAILED")),
    ),
    Parameter(
        "target",
        ("PUT", "PATCH"),
        frozenset({TABLE_QUERY}),
        "With a CSV, Arrow or Parquet body: the column (or comma-separated columns) that are y "
        "(empty: no y).",
        _string(),
        _string(),
    ),
    Parameter(
        "model-key",
        ("POST", "PATCH", "DELETE", "GET"),
        _JSON_BODY,
        "The key a PUT returned; model_key is an alias (both given: they must agree).",
        key_schema,
        key_schema,
        aliases=("model_key",),
    ),
)

#: The names a model-key may come under.
KEY_NAMES: tuple[str, ...] = next(p.names for p in PARAMETERS if p.name == "model-key")


def taken_by(verb: str, source: str | None = None) -> tuple[Parameter, ...]:
    """The parameters `verb` takes (from `source`, if given), in table order."""
    return tuple(
        p for p in PARAMETERS if verb in p.verbs and (source is None or source in p.sources)
    )


def accepted(verb: str) -> frozenset[str]:
    """Every name (aliases included) `verb` reads from a JSON body or its query string."""
    return _ACCEPTED[verb]


def merge_body(values: dict[str, Any], body: Mapping[str, Any]) -> None:
    """Add the JSON body's members to the query string's `values`; a name in both must
    have one value."""
    for name, value in body.items():
        if name in values and values[name] != value:
            raise InvalidPayload(f"{name} given twice with different values", name)
        values[name] = value


def given(values: Mapping[str, Any], known: Iterable[str], verb: str) -> dict[str, Any]:
    """The parameters given (a JSON null means "not given", for every parameter alike);
    InvalidPayload naming the first one `verb` does not take, listing those it does."""
    found = {name: value for name, value in values.items() if value is not None}
    unknown = sorted(set(found) - set(known))
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise InvalidPayload(
            f"unknown parameter(s) for {verb}: {', '.join(unknown)}; allowed: {allowed}",
            unknown[0],
        )
    return found


def verbs_of(operations: Iterable[str]) -> list[str]:
    """The HTTP verbs of service operations, in `Allow` order."""
    offered = set(operations)
    return [verb for operation, verb in _VERBS if operation in offered]


def operation_of(verb: str) -> str:
    """The service operation an HTTP verb of `/{model}` runs."""
    return _OPERATIONS[verb.upper()]


# PERF: every request reads these; the table is constant, so they are found once.
_ACCEPTED = {
    verb: frozenset(name for p in taken_by(verb) if p.sources & _JSON_BODY for name in p.names)
    for _, verb in _VERBS
}
#: GET's parameters of the key listing, refused beside a model-key.
LISTING = ("limit", "after", "status")
_OPERATIONS = {verb: operation for operation, verb in _VERBS}
