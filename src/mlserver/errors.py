"""The one exception tree of mlserver; `mlserver.http.errors` maps it to status codes.

MLServerError
├── ConfigurationError      the server was wired wrongly (bad wrapper name, unknown serializer)
├── InvalidPayload          a request parameter is missing or malformed
├── ModelNotFound           no wrapper is registered under that name
├── KeyNotFound             the model-key names no version
├── NotReady                the key exists but its state forbids the operation (RUNNING, FAILED)
│   └── StaleBase           an update's base is no longer the newest finished version
├── Conflict                the request contradicts what is stored (e.g. an alias points there)
├── NotServable             a finished version this server will not load as configured
│   └── UntrustedModel      it holds types the server does not trust
├── UnsupportedOperation    the wrapper does not offer the operation (e.g. update)
├── NotExportable           a serializer cannot store this model so it answers as the model does
├── NotImportable           an artifact that does not load, has no known schema or fails its sample
├── PayloadTooLarge         the request body is above the configured limit
├── Overloaded              too many training jobs wait already; try again later
├── UnsupportedMediaType    the request body is not JSON
├── NotStorable             training data the store cannot keep exactly (so it keeps none)
├── UnprocessableData       well-formed data the model cannot take
│   └── SchemaMismatch      its columns differ from the training schema
└── StoreError              the store failed or returned something it should not have
    └── IntegrityError      a stored blob does not match its sha256
        └── SignatureMismatch   ... or its signature (tampered, unsigned, unknown key)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigurationError",
    "Conflict",
    "IntegrityError",
    "InvalidPayload",
    "KeyNotFound",
    "MLServerError",
    "ModelNotFound",
    "NotExportable",
    "NotImportable",
    "NotReady",
    "NotServable",
    "NotStorable",
    "Overloaded",
    "PayloadTooLarge",
    "SchemaMismatch",
    "SignatureMismatch",
    "StaleBase",
    "StoreError",
    "UnprocessableData",
    "UnsupportedMediaType",
    "UnsupportedOperation",
    "UntrustedModel",
]


class MLServerError(Exception):
    """Root of every error mlserver raises on purpose."""


class ConfigurationError(MLServerError):
    """The server was wired wrongly; raised at start-up, never for a request."""


class InvalidPayload(MLServerError):
    """A request parameter is missing or malformed; `parameter` names it."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class Conflict(MLServerError):
    """The request contradicts what is stored: e.g. deleting a version an alias points at."""


class ModelNotFound(MLServerError):
    """No wrapper is registered under the requested model name."""


class KeyNotFound(MLServerError):
    """The model-key names no stored version of the model."""


class NotReady(MLServerError):
    """The key exists, but its newest state (`status`) does not allow the operation."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class UnsupportedOperation(MLServerError):
    """The model does not offer `operation` (e.g. update); `supported` lists what it does."""

    def __init__(
        self, message: str, *, model: str, operation: str, supported: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.model = model
        self.operation = operation
        self.supported = tuple(supported)


class NotExportable(MLServerError):
    """A serializer cannot store this model so that it answers as the model does (e.g. its
    ONNX graph gives other answers on the training rows); the version becomes FAILED."""


class NotImportable(MLServerError):
    """An artifact from elsewhere that cannot become a version: it does not load with its
    serializer, its input schema is unknown, or it fails to predict on its sample. Nothing
    was stored."""


class NotStorable(MLServerError):
    """Training data that its stored form would not give back exactly, or that is larger
    than `max_stored_data_bytes`: the version trains as usual, without stored data (so it
    cannot be refitted or run again)."""


class PayloadTooLarge(MLServerError):
    """The request body is larger than the configured limit."""


class Overloaded(MLServerError):
    """Too many training jobs of this process wait for a slot (or it is shutting down);
    nothing was stored, and the request may be sent again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnsupportedMediaType(MLServerError):
    """The request body has a media type the server does not read."""


class UnprocessableData(MLServerError):
    """Well-formed data the model cannot take."""


class SchemaMismatch(UnprocessableData):
    """Columns differ from the training schema; `missing` and `unexpected` name them."""

    def __init__(
        self, message: str, missing: Sequence[str] = (), unexpected: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)


class StoreError(MLServerError):
    """The store failed; the message never carries credentials or SQL."""


class IntegrityError(StoreError):
    """A stored blob does not match the sha256 recorded when it was written."""


class SignatureMismatch(IntegrityError):
    """A stored blob's signature is missing, made with an unknown key, or wrong: the bytes were
    not written by a server holding the signing key, so they are never deserialized."""


class StaleBase(NotReady):
    """The version an update was checked against is no longer the newest FINISHED one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "FINISHED")


class NotServable(MLServerError):
    """A finished version this server refuses to load (e.g. trained with another library
    version while such skew is refused)."""


class UntrustedModel(NotServable):
    """A stored model contains types the server is not configured to trust; `types` lists them."""

    def __init__(self, message: str, types: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.types = list(types)
