"""The one map from mlserver's exception tree to HTTP status codes and error bodies."""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon
import orjson

from mlserver import errors
from mlserver.http.parameters import verbs_of

__all__ = ["ApiError", "install", "status_of"]

log = logging.getLogger("mlserver.http")

# Most specific first is not needed: the lookup walks each exception's MRO.
_CODES: dict[type[errors.MLServerError], tuple[str, str]] = {
    errors.InvalidPayload: (falcon.HTTP_400, "Invalid parameter"),
    errors.NotImportable: (falcon.HTTP_400, "Artifact not importable"),
    errors.ModelNotFound: (falcon.HTTP_404, "Unknown model"),
    errors.KeyNotFound: (falcon.HTTP_404, "Unknown model-key"),
    errors.UnsupportedOperation: (falcon.HTTP_405, "Method not allowed"),
    errors.NotReady: (falcon.HTTP_409, "Not ready"),
    errors.Conflict: (falcon.HTTP_409, "Conflict"),
    errors.NotServable: (falcon.HTTP_409, "Not servable"),
    errors.PayloadTooLarge: (falcon.HTTP_413, "Payload too large"),
    errors.UnsupportedMediaType: (falcon.HTTP_415, "Unsupported media type"),
    errors.UnprocessableData: (falcon.HTTP_422, "Unprocessable data"),
    errors.SchemaMismatch: (falcon.HTTP_422, "Schema mismatch"),
    errors.StoreError: (falcon.HTTP_503, "Store unavailable"),
    errors.Overloaded: (falcon.HTTP_503, "Server busy"),
    errors.IntegrityError: (falcon.HTTP_500, "Stored model is corrupt"),
    # NOTE: 500, not 409: bytes that fail their signature were written by someone without
    # the key (or the server's keys are wrong). No client can resolve that by waiting or
    # retrying, and a 5xx is what operators alert on.
    errors.SignatureMismatch: (falcon.HTTP_500, "Stored model failed verification"),
    errors.ConfigurationError: (falcon.HTTP_500, "Server misconfigured"),
}


class ApiError(falcon.HTTPError):
    """An HTTPError whose body carries extra fields (e.g. the blocking `status` of a 409)."""

    def __init__(
        self,
        code: str,
        title: str,
        description: str,
        extra: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code, title=title, description=description, headers=headers)
        self.extra = extra

    def to_dict(self, obj_type: type = dict) -> Any:
        body = super().to_dict(obj_type)
        body.update(self.extra)
        return body


def status_of(exc: errors.MLServerError) -> tuple[str, str]:
    """The status code and title an error answers with (the dashboard's pages use it too)."""
    for cls in type(exc).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return falcon.HTTP_500, "Internal error"


def _domain_error(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict) -> None:
    status, title = status_of(exc)  # type: ignore[arg-type]
    req.context.error = type(exc).__name__  # for the access log
    if isinstance(exc, errors.UnsupportedOperation):
        # The domain names the operation; the client sent, and is told of, its verb.
        verb = verbs_of([exc.operation])[0]
        raise falcon.HTTPMethodNotAllowed(
            verbs_of(exc.supported),
            title=title,
            description=f"model {exc.model!r} does not support {verb}",
        )
    if status == falcon.HTTP_500:
        log.error(
            "event=server_error request_id=%s path=%s error=%r",
            req.context.get("request_id"),
            json.dumps(req.path),  # quoted: a client must not forge log fields or lines
            str(exc),
        )
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.NotReady):
        extra["status"] = exc.status
    elif isinstance(exc, errors.NotServable):
        extra["status"] = "FINISHED"  # finished, but this server will not load it
    if isinstance(exc, errors.InvalidPayload) and exc.parameter:
        extra["parameter"] = exc.parameter
    if isinstance(exc, errors.SchemaMismatch) and (exc.missing or exc.unexpected):
        extra.update(missing=exc.missing, unexpected=exc.unexpected)
    headers = None
    if isinstance(exc, errors.Overloaded):
        headers = {"Retry-After": str(exc.retry_after)}
    raise ApiError(status, title, str(exc), extra, headers)


def _unexpected_error(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict
) -> None:
    req.context.error = type(exc).__name__
    log.exception(
        "event=unhandled_error request_id=%s method=%s path=%s",
        req.context.get("request_id"),
        json.dumps(req.method),
        json.dumps(req.path),
    )
    raise falcon.HTTPInternalServerError(
        title="Internal error", description="an internal error occurred; it has been logged"
    )


def _serialize(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    body = exc.to_dict()
    body.setdefault("description", body.get("title", ""))
    if req.path == "/v2" or req.path.startswith("/v2/"):
        # The Open Inference Protocol's error shape, whatever answered (auth included).
        body = {"error": body["description"]}
    resp.data = orjson.dumps(body)
    resp.content_type = falcon.MEDIA_JSON


def install(app: falcon.App) -> None:
    """Register the handlers: domain errors by code, anything else a logged generic 500."""
    app.add_error_handler(Exception, _unexpected_error)
    app.add_error_handler(errors.MLServerError, _domain_error)
    app.set_error_serializer(_serialize)
