"""Models trained elsewhere: an artifact is checked (it loads, its input schema is known, it
predicts on a sample) and only then stored as a FINISHED version, `lineage.kind = "import"`;
and any version's bytes go back out as they are stored. No HTTP here.

Which formats a caller may send is the caller's to decide (`allow_pickle`): the HTTP route
takes joblib and pickle only when the server allows it, the CLI reads a file its operator
chose. skops artifacts load only with the types skops and the server's `trusted_types`
trust; nothing an artifact names widens that.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sklearn

from mlserver.arguments import checked_name, model_key, promote_policy
from mlserver.artifacts import FORMATS, PICKLES, guess_format
from mlserver.errors import (
    InvalidPayload,
    MLServerError,
    NotImportable,
    NotReady,
    UnsupportedMediaType,
    UntrustedModel,
)
from mlserver.frames.keys import artifact_key, name_key
from mlserver.frames.rows import Rows
from mlserver.frames.schema import Schema
from mlserver.loaded import Loaded, verified_blob
from mlserver.predictions import model_output
from mlserver.provenance import DEFAULT_TARGET, UNKNOWN
from mlserver.serializers.base import Serializer, resolve_serializer
from mlserver.signing import Placement
from mlserver.store.base import Artifact, Status, Version
from mlserver.wrapper import ModelWrapper

if TYPE_CHECKING:
    from mlserver.service import Service

__all__ = ["Exported", "Imported", "Imports"]

log = logging.getLogger("mlserver.imports")

#: Rows of a sample the check predicts on, at most.
_SAMPLE_ROWS = 1000
# Values made for a numeric column when no sample is given: positive, distinct, not all 0.
_NUMBERS = (1.0, 0.5, 2.0)


@dataclass(frozen=True)
class Imported:
    """The version an import stored, or (`created` False) the key's newest version when it
    already was this very artifact."""

    version: Version
    created: bool


@dataclass(frozen=True)
class Exported:
    """A version's stored bytes and what they are."""

    version: Version
    data: bytes

    @property
    def filename(self) -> str:
        """`{model}-{key}-v{n}.{extension}`, what `ml-server export` writes by default."""
        extension = {"pickle": "pkl"}.get(str(self.version.serializer), self.version.serializer)
        v = self.version
        return f"{v.model}-{v.key}-v{v.version}.{extension}"


@dataclass(frozen=True)
class _Checked:
    """An artifact that loaded and predicted: what its version records."""

    schema: Schema
    targets: list[Any]
    libraries: dict[str, str]
    model_type: str


class Imports:
    """Importing artifacts as versions, and exporting versions' bytes."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store
        self.registry = service.registry
        self.settings = service.settings

    def import_artifact(
        self,
        name: str,
        blob: bytes,
        *,
        serializer: Any = None,
        key_name: Any = None,
        promote: Any = None,
        sample: pd.DataFrame | None = None,
        allow_pickle: bool = False,
        source: str = "http",
        filename: str | None = None,
    ) -> Imported:
        """Store `blob` as a FINISHED version of a key of model `name`: the key of
        `key_name`, else one from the artifact's sha256. `serializer` is guessed from the
        bytes (and `filename`) when not given.

        Raises ModelNotFound, InvalidPayload (a parameter), UnsupportedMediaType (joblib or
        pickle without `allow_pickle`), NotImportable (it does not load, its schema is
        unknown or it fails on its sample: nothing stored), NotReady (the key has a RUNNING
        version), StoreError.
        """
        wrapper = self.registry.get(name)
        key_name = checked_name(key_name)
        promote = promote_policy(promote)
        fmt = self._format(serializer, blob, filename)
        if fmt in PICKLES and not allow_pickle:
            raise UnsupportedMediaType(
                f"{fmt} artifacts run their sender's code when they load: this server takes "
                "them over HTTP only when started with --allow-pickle-import; send ONNX or "
                "skops, or import the file with `ml-server import`"
            )
        sha = hashlib.sha256(blob).hexdigest()
        key = name_key(key_name) if key_name is not None else artifact_key(sha)
        newest = self.store.newest(name, key)
        if newest is not None and newest.status is Status.RUNNING:
            raise _running(newest)
        if (
            newest is not None
            and newest.status is Status.FINISHED
            and (newest.sha256, newest.serializer) == (sha, fmt)
        ):
            return Imported(newest, created=False)
        checked = self._check(wrapper, fmt, blob, sample)
        metadata = {
            "rows": None,
            "n_features": len(checked.schema.columns),
            "features": checked.schema.to_json(),
            "targets": checked.targets,
            "libraries": checked.libraries,
            "kwargs": {"modkwargs": {}, "algkwargs": {}},
            "scoring": None,
            "imported": {
                "serializer": fmt,
                "sha256": sha,
                "source": source,
                "filename": PurePath(filename).name if filename else None,
                "model": checked.model_type,
            },
        }
        if key_name is not None:
            metadata["name"] = key_name
        version = self._store(name, key, Artifact(blob, sha, fmt, metadata), promote)
        log.info(
            "event=model_imported model=%s key=%s version=%d serializer=%s bytes=%d",
            name,
            key,
            version.version,
            fmt,
            len(blob),
        )
        return Imported(version, created=True)

    def check_parameters(
        self, *, serializer: Any = None, key_name: Any = None, promote: Any = None
    ) -> None:
        """Refuse an import's parameters before its artifact is read (InvalidPayload), as
        `import_artifact` would."""
        checked_name(key_name)
        promote_policy(promote)
        if serializer is not None:
            self._format(serializer, b"", None)

    def export(self, name: str, *, key: Any, version: Any = None, alias: Any = None) -> Exported:
        """The stored bytes of version `version` of a key (or the one `alias` names, else
        `served`), checked against their sha256 and signature, as they were stored."""
        self.registry.get(name)
        key = model_key(key)
        found = self.service.lifecycle.select(name, key, version, alias, cached=False)
        return Exported(found, verified_blob(self.store, self.service.signer, found))

    # -- helpers ---------------------------------------------------------------------------

    def _format(self, serializer: Any, blob: bytes, filename: str | None) -> str:
        if serializer is not None:
            if not isinstance(serializer, str) or serializer not in FORMATS:
                raise InvalidPayload(
                    f"serializer must be one of {', '.join(FORMATS)}, got {serializer!r}",
                    "serializer",
                )
            return serializer
        if not blob:
            raise NotImportable("the artifact is empty")
        found = guess_format(blob, filename)
        if found is None:
            raise NotImportable(
                "the artifact is none of the formats recognised by their first bytes "
                f"({', '.join(FORMATS)}): name its serializer"
            )
        return found

    def _check(
        self, wrapper: ModelWrapper, fmt: str, blob: bytes, sample: pd.DataFrame | None
    ) -> _Checked:
        """Load the artifact, find its schema and predict with it through the route's
        wrapper; NotImportable saying which step failed."""
        if not blob:
            raise NotImportable("the artifact is empty")
        serializer = resolve_serializer(fmt).trusting(self.settings.trusted_types)
        model, libraries = _load(serializer, blob)
        schema, rows = _schema_and_rows(model, sample)
        targets: list[Any] = [DEFAULT_TARGET]
        loaded = Loaded.of(wrapper, model, schema, tuple(targets), ())
        if not loaded.offered:
            raise NotImportable(
                f"the artifact's model ({type(model).__name__}) has none of the methods "
                f"{wrapper.name!r} serves ({', '.join(wrapper.methods)})"
            )
        try:
            frame = schema.conform(rows)
        except MLServerError as exc:
            raise NotImportable(f"the sample does not fit the model's schema: {exc}") from None
        conformed = Rows(frame, orient="split", conformed=True)
        for method in loaded.offered:
            with _quiet():
                try:
                    raw = wrapper.apply(model, frame, method)
                    output = model_output(
                        raw,
                        conformed,
                        model,
                        method,
                        tuple(targets),
                        self.settings.max_output_cells,
                    )
                except Exception as exc:
                    source = "the sample" if sample is not None else "rows made from its schema"
                    hint = "" if sample is not None else " (give a sample of real rows)"
                    raise NotImportable(
                        f"the model cannot {method} on {source}: "
                        f"{type(exc).__name__}: {_brief(exc)}{hint}"
                    ) from None
            if method == "predict" and output.shape[1] > 1:
                targets = list(range(output.shape[1]))
        return _Checked(schema, targets, libraries, _type_name(model))

    def _store(self, name: str, key: str, artifact: Artifact, promote: str) -> Version:
        """A new version holding `artifact`: claimed, its lineage recorded, then finished,
        each as a job does (signed when the server signs)."""
        # NOTE: nothing renews this lease (no job runs): it covers writing the blob, at a
        # second per MB on top of the usual lease (PostgreSQL writes ~17 MB/s here).
        lease = self.settings.lease_seconds + len(artifact.blob) / 1_000_000
        claim = self.store.claim(
            name, key, worker=self.service.jobs.worker, lease_seconds=lease, retrain=True
        )
        if not claim.created:
            raise _running(claim.version)
        version = claim.version
        lineage = {
            "data": None,
            "rows": None,
            "columns": artifact.metadata["n_features"],
            "parent": None,
            "kind": "import",
            "source": None,
        }
        try:
            self.store.record_inputs(version.id, lineage=lineage, job={})
            signature = None
            if self.service.signer is not None:
                where = Placement.of(version, artifact.serializer, artifact.metadata)
                signature = self.service.signer.sign(artifact.blob, where)
            stored = self.store.finish(
                version.id,
                artifact,
                signature,
                promote=promote,
                keep_versions=self.settings.keep_versions,
            )
        except BaseException as exc:
            _fail(self.store, version, f"import failed: {exc}")
            raise
        if not stored:
            raise NotReady(
                f"version {version.version} of {key!r} was deleted or cancelled while it was "
                "stored",
                "FAILED",
            )
        self.service.served.forget(name, key)
        found = self.store.version(name, key, version.version)
        return found if found is not None else version


def _running(version: Version) -> NotReady:
    return NotReady(
        f"model-key {version.key!r} has a RUNNING version ({version.version}): import once "
        "it has ended",
        "RUNNING",
    )


def _fail(store: Any, version: Version, error: str) -> None:
    try:
        store.fail(version.id, error)
    except Exception:  # the store failing twice: the lease rules will end the version
        log.exception("event=import_fail_unrecorded version_id=%d", version.id)


def _brief(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Warnings a model emits while it is checked (e.g. "X does not have valid feature
    names") are its own; they do not fail an import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _load(serializer: Serializer, blob: bytes) -> tuple[Any, dict[str, str]]:
    """The artifact's model, and the library versions it declares."""
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = serializer.loads(blob)
        except UntrustedModel as exc:
            raise NotImportable(
                f"the skops artifact holds types this server does not trust: "
                f"{', '.join(exc.types)} (the server's trusted_types setting lists the types "
                "it trusts beyond skops' own; nothing in an artifact can add to it)"
            ) from None
        except Exception as exc:  # whatever the loader raises: these bytes are not a model
            raise NotImportable(
                f"the artifact does not load as {serializer.name}: "
                f"{type(exc).__name__}: {_brief(exc)}"
            ) from None
    if serializer.name == "onnx":
        return model, {"onnxruntime": UNKNOWN, **_producer(blob)}
    trained = next(
        (
            w.message.original_sklearn_version
            for w in caught
            if isinstance(w.message, InconsistentVersionWarning)
        ),
        None,
    )
    if trained is None:
        # NOTE: scikit-learn warns when the version differs; silence means it is this one,
        # for its own estimators. Other libraries' models declare nothing we can read.
        trained = sklearn.__version__ if _is_sklearn(model) else UNKNOWN
    libraries = {"scikit-learn": str(trained)}
    if serializer.name == "skops":
        libraries["skops"] = _skops_version(blob)
    return model, libraries


def _type_name(model: Any) -> str:
    from mlserver.serializers.onnx_model import OnnxModel

    return "ONNX graph" if isinstance(model, OnnxModel) else type(model).__name__


def _is_sklearn(model: Any) -> bool:
    return type(model).__module__.split(".")[0] == "sklearn"


def _producer(blob: bytes) -> dict[str, str]:
    """The exporter an ONNX graph names (`producer_name`, e.g. skl2onnx) and its version."""
    import onnx

    graph = onnx.load_from_string(blob)
    name = graph.producer_name or "onnx producer"
    return {name: graph.producer_version or UNKNOWN}


def _skops_version(blob: bytes) -> str:
    import io
    import json
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            schema = json.loads(archive.read("schema.json"))
        return str(schema.get("_skops_version") or UNKNOWN)
    except (KeyError, ValueError, zipfile.BadZipFile):
        return UNKNOWN


def _schema_and_rows(model: Any, sample: pd.DataFrame | None) -> tuple[Schema, pd.DataFrame]:
    """The training schema (from the model, else the sample) and rows to check it on (the
    sample's, else rows made from the schema)."""
    names, width = _inputs_of(model)
    if sample is not None:
        if not isinstance(sample, pd.DataFrame) or sample.empty:
            raise NotImportable("the sample has no rows")
        sample = sample.iloc[:_SAMPLE_ROWS]
        if names is not None:
            missing = [n for n in names if n not in set(sample.columns)]
            if missing:
                raise NotImportable(
                    f"the sample lacks columns the model was trained on: {', '.join(missing)}"
                )
            sample = sample[names]
        elif width is not None and sample.shape[1] != width:
            raise NotImportable(
                f"the model takes {width} columns, the sample has {sample.shape[1]}"
            )
        return Schema.of(sample), sample
    if names is None and width is None:
        raise NotImportable(
            f"the input schema of the artifact's model ({type(model).__name__}) is unknown: "
            "it has no feature_names_in_ or n_features_in_; give a sample of rows "
            "(ml-server import --sample)"
        )
    frame = _made_rows(model, names if names is not None else list(range(width or 0)))
    return Schema.of(frame), frame


def _inputs_of(model: Any) -> tuple[list[Any] | None, int | None]:
    """The model's input column names, or (for one fitted on arrays) how many columns."""
    from mlserver.serializers.onnx_model import OnnxModel

    if isinstance(model, OnnxModel):
        names = getattr(model, "feature_names_in_", None)
        if names is not None:
            return [str(n) for n in names], None
        return None, int(model.inputs[0]["width"])
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(n) if not isinstance(n, str) else n for n in np.asarray(names).tolist()], None
    width = getattr(model, "n_features_in_", None)
    if isinstance(width, (int, np.integer)) and width > 0:
        return None, int(width)
    return None, None


def _made_rows(model: Any, columns: list[Any]) -> pd.DataFrame:
    """Three rows of plausible values: an encoder's own categories where the model has one
    for the column, the types an ONNX graph's inputs name, else positive numbers."""
    from mlserver.serializers.onnx_model import OnnxModel

    kinds: dict[Any, str] = {}
    if isinstance(model, OnnxModel):
        for spec in model.inputs:
            for column in spec["columns"] or columns:
                kinds[column] = spec["type"]
    categories = _categories(model)
    data: dict[Any, Any] = {}
    for column in columns:
        kind = kinds.get(column)
        if column in categories:
            values = [categories[column][i % len(categories[column])] for i in range(3)]
        elif kind == "string":
            values = ["a", "b", "c"]
        elif kind in ("int64", "int32"):
            values = [1, 0, 2]
        elif kind == "bool":
            values = [True, False, True]
        else:
            values = list(_NUMBERS)
        data[column] = values
    return pd.DataFrame(data, columns=pd.Index(columns, dtype=object))


def _categories(model: Any) -> dict[Any, list[Any]]:
    """Column -> categories of the encoders (OneHotEncoder, OrdinalEncoder) that see the
    model's input columns: in it, its pipeline's first step, or a column transformer."""
    found: dict[Any, list[Any]] = {}

    def walk(part: Any, columns: list[Any]) -> None:
        steps = getattr(part, "steps", None)
        if steps:
            walk(steps[0][1], columns)
            return
        transformers = getattr(part, "transformers_", None)
        if transformers:
            names = list(getattr(part, "feature_names_in_", columns))
            for _, transformer, selected in transformers:
                if isinstance(transformer, str):  # "drop", "passthrough"
                    continue
                walk(transformer, _selected(names, selected))
            return
        encoded = getattr(part, "categories_", None)
        if encoded is None:
            return
        for column, values in zip(columns, encoded, strict=False):
            kept = [v for v in np.asarray(values).tolist() if v is not None and v == v]
            if kept:
                found[column] = kept

    names, _ = _inputs_of(model)
    walk(model, names or [])
    return found


def _selected(names: list[Any], selected: Any) -> list[Any]:
    """The column names a column transformer's selection (names, indices, mask) picks."""
    if isinstance(selected, (str, int)):
        selected = [selected]
    try:
        picked = list(selected)
    except TypeError:  # a slice or a callable: not worth resolving for made rows
        return []
    if picked and all(isinstance(p, (bool, np.bool_)) for p in picked):
        return [n for n, keep in zip(names, picked, strict=False) if keep]
    return [names[p] if isinstance(p, (int, np.integer)) else p for p in picked]
