"""A loaded version: its model, training schema and targets, and which of the wrapper's
methods it runs, and how (on the DataFrame through the wrapper, or on one array); and the
bytes it loads from, verified first."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlserver.arrays import array_model
from mlserver.errors import InvalidPayload, MLServerError, StoreError, UnprocessableData
from mlserver.frames.rows import Rows
from mlserver.frames.schema import Schema
from mlserver.serializers.base import Serializer, has_method, resolve_serializer
from mlserver.signing import Placement, Signer
from mlserver.store.base import Store, Version
from mlserver.wrapper import ModelWrapper

__all__ = ["Loaded", "asked_method", "serializer_for", "verified_blob"]

#: The service's logger: these events are the service's, wherever the code sits.
log = logging.getLogger("mlserver.service")


@dataclass(frozen=True)
class Loaded:
    model: Any
    schema: Schema
    targets: tuple[Any, ...]
    warnings: tuple[str, ...]
    #: The model's form that takes conformed rows as one float64 array (see mlserver.arrays).
    direct: Any = None
    #: The wrapper's methods this model can run (see `_offered`), found once per load.
    offered: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        wrapper: ModelWrapper,
        model: Any,
        schema: Schema,
        targets: tuple[Any, ...],
        warnings: tuple[str, ...],
    ) -> Loaded:
        direct = array_model(model, schema.columns) if schema.numeric else None
        return cls(model, schema, targets, warnings, direct, _offered(wrapper, model))

    def method(self, asked: str | None, served: tuple[str, ...], what: str) -> str:
        """The method to run: the one asked for if the model has it; without one, `predict`,
        else the model's only method; InvalidPayload (400) naming what the model has."""
        offered = self.offered
        if asked is not None and asked in offered:
            return asked
        if asked is None:
            if "predict" in offered:
                return "predict"
            if len(offered) == 1:
                return offered[0]
        if not offered:
            raise InvalidPayload(
                f"{what} ({type(self.model).__name__}) has none of the methods this server "
                f"serves ({', '.join(served)}): there is nothing to predict with",
                "method",
            )
        missing = f"has no method {asked!r}" if asked is not None else "has no predict: give method"
        raise InvalidPayload(f"{what} {missing}; available: {', '.join(offered)}", "method")

    def run(self, wrapper: ModelWrapper, method: str, rows: Rows, version: Version) -> Any:
        """`method` on conformed `rows`, in the form the model takes them (`array_method`).

        Raises UnprocessableData (422) quoting what the model's own code raised on these
        rows; the log line that records it names `version`.
        """
        direct = self.array_method(wrapper, method)
        try:
            if direct is not None:
                return direct(rows.array)
            return wrapper.apply(self.model, rows.frame, method)
        except (MemoryError, MLServerError):  # not the rows' fault, or already worded
            raise
        except Exception as exc:  # the model's own code refusing these rows
            refusal = f"{type(exc).__name__}: {exc}"
            log.info(
                "event=model_refused model=%s key=%s version=%d method=%s error=%r",
                version.model,
                version.key,
                version.version,
                method,
                refusal,
            )
            raise UnprocessableData(f"the model cannot {method} on x: {refusal}") from None

    def array_method(self, wrapper: ModelWrapper, method: str) -> Callable[[Any], Any] | None:
        """The model's `method` on one float64 array of conformed rows, where it has an
        array form and the wrapper just calls the model; None: through the wrapper."""
        if self.direct is None or not _calls_model(wrapper, method):
            return None
        return getattr(self.direct, method, None)


def asked_method(wrapper: ModelWrapper, method: Any) -> str | None:
    """The method a client asked for (None: not given), if the wrapper offers it at all."""
    if method is None:
        return None
    if not isinstance(method, str) or method not in wrapper.methods:
        raise InvalidPayload(
            f"method must be one of {', '.join(wrapper.methods)}; got {method!r}", "method"
        )
    return method


def _offered(wrapper: ModelWrapper, model: Any) -> tuple[str, ...]:
    """The wrapper's methods this fitted model can run. A wrapper that computes a method
    itself (its own `predict` or `apply`) offers it whatever the model has."""
    kind = type(wrapper)
    own_apply = kind.apply is not ModelWrapper.apply
    own_predict = kind.predict is not ModelWrapper.predict
    return tuple(
        m
        for m in wrapper.methods
        if own_apply or (m == "predict" and own_predict) or has_method(model, m)
    )


def _calls_model(wrapper: ModelWrapper, method: str) -> bool:
    """The wrapper runs `method` as `model.<method>(x)`, as ModelWrapper does by default."""
    kind = type(wrapper)
    if kind.apply is not ModelWrapper.apply:
        return False
    return method != "predict" or kind.predict is ModelWrapper.predict


def verified_blob(store: Store, signer: Signer | None, version: Version) -> bytes:
    """A version's bytes, checked against its signature when the server signs blobs:
    nothing deserializes bytes (for a predict or in an update job) before this check."""
    blob = store.load_blob(version)
    if signer is None:
        return blob
    where = Placement.of(version)
    verified = signer.verify(blob, version.signature, where)
    if verified.legacy:
        # A 0.1.0 signature is replaced by one bound to this row, once.
        signature = signer.sign(blob, where)
        try:
            store.resign(version.id, version.signature, signature)
        except StoreError as exc:
            log.warning("event=resign_failed version_id=%d error=%r", version.id, str(exc))
    return blob


def serializer_for(
    wrapper: ModelWrapper, version: Version, trusted: tuple[str, ...] = ()
) -> Serializer:
    """The serializer a version was stored with: the wrapper's own, or the one it names;
    trusting the server's `trusted` types too, where it loads only trusted ones."""
    own = wrapper.get_serializer()
    found = (
        own if version.serializer in (None, own.name) else resolve_serializer(version.serializer)
    )
    return found.trusting(trusted) if trusted else found
