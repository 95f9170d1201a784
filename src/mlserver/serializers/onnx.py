"""ONNX serializer: models exported with skl2onnx, served by onnxruntime.

The export uses the training schema: an all-numeric frame becomes one float32 tensor `input`
with the training columns in order; a frame with string columns becomes one `[None, 1]` input
per column, named like the column, which is what ColumnTransformer pipelines need. Float32
throughout: skl2onnx's float64 models fail to load in onnxruntime for several estimators.

A graph serves only the methods the estimator itself has (`predict_proba` only where the
estimator has one) and that one of its outputs gives; the list is kept in the graph's
metadata (`mlserver.methods`). Before a version is stored, `verify` runs every served method
on the training rows in onnxruntime and in scikit-learn: a graph that answers differently is
refused, so a version is never stored that gives other answers than its model.

An ONNX graph is a frozen snapshot. To let wrappers with `update` learn further, the artifact
also keeps the native model (joblib) unless `keep_native=False`; an update loads that, updates
it and exports both again.
"""

from __future__ import annotations

import io
import struct
import warnings
from typing import Any

import joblib
import numpy as np
import orjson
import pandas as pd
from sklearn.base import is_classifier, is_clusterer, is_outlier_detector, is_regressor

from mlserver.errors import NotExportable
from mlserver.serializers.base import Serializer, has_method
from mlserver.serializers.onnx_foreign import describe
from mlserver.serializers.onnx_model import METHODS, OnnxModel, brief
from mlserver.serializers.onnx_parity import (
    ABSOLUTE_TOLERANCE,
    RELATIVE_TOLERANCE,
    difference,
    float32_rows,
)

# NOTE: the tolerances and OnnxModel are listed here too: this module is the backend's face.
__all__ = ["ABSOLUTE_TOLERANCE", "RELATIVE_TOLERANCE", "OnnxModel", "OnnxSerializer"]

_MAGIC = b"MLSONNX1"
_HEADER = struct.Struct(">8sQ")  # magic, length of the ONNX bytes; the native model follows

_ALTERNATIVE = "the joblib or skops serializer stores the model itself and answers exactly"


class OnnxSerializer(Serializer):
    """Exports to ONNX at training time; predicts with an onnxruntime session."""

    name = "onnx"
    skew_libraries = ("onnxruntime",)
    #: Updates unpickle the native scikit-learn model kept beside the graph.
    update_skew_libraries = ("scikit-learn",)

    def __init__(
        self,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        keep_native: bool = True,
        target_opset: int | None = None,
        verify_rows: int = 2000,
    ) -> None:
        import onnxruntime  # noqa: F401 - fail at configuration time if the extra is missing
        import skl2onnx  # noqa: F401

        # PERF: one intra-op thread per session was faster on 2 cores for both session
        # creation and 10k-row batches; request threads give the parallelism.
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.keep_native = keep_native
        self.target_opset = target_opset
        #: How many of the training rows (the first ones) `verify` compares on.
        self.verify_rows = verify_rows

    @property
    def can_update(self) -> bool:
        return self.keep_native

    def dumps(self, model: Any, schema: Any = None) -> bytes:
        if schema is None:
            raise ValueError("the ONNX export needs the training schema")
        graph = _export(model, schema, self.target_opset)
        native = b""
        if self.keep_native:
            buffer = io.BytesIO()
            joblib.dump(model, buffer)
            native = buffer.getvalue()
        return _HEADER.pack(_MAGIC, len(graph)) + graph + native

    def verify(self, model: Any, blob: bytes, sample: Any) -> None:
        """Refuse a graph whose answers on the training rows differ from the model's own.

        Every served method runs on the first `verify_rows` rows in onnxruntime and in
        scikit-learn (on the same rows rounded to float32, as the graph sees them): labels
        must be identical, floats within the tolerance (`onnx_parity`).
        """
        name = _name(model)
        try:
            served = self.loads(blob)
        except Exception as exc:  # onnxruntime's own exception types: any of them refuses it
            raise NotExportable(
                f"onnxruntime cannot load the ONNX graph of {name}: {brief(exc)}; {_ALTERNATIVE}"
            ) from None
        if not isinstance(sample, pd.DataFrame) or sample.empty:
            return
        rows = sample.iloc[: self.verify_rows]
        rounded = float32_rows(rows, served.inputs)
        for method in served.methods:
            try:
                got = getattr(served, method)(rows)
            except ValueError as exc:
                raise NotExportable(
                    f"the ONNX graph of {name} fails on the training rows ({method}): "
                    f"{brief(exc)}; {_ALTERNATIVE}"
                ) from None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "X does not have valid feature names"
                try:
                    expected = getattr(model, method)(rounded)
                except Exception as exc:  # the model's own failure: nothing to compare with
                    raise NotExportable(
                        f"{name}.{method} fails on the float32-rounded training rows, so its "
                        f"ONNX graph cannot be checked: {brief(exc)}; {_ALTERNATIVE}"
                    ) from None
            gap = difference(expected, got, exact=method == "predict" and served.labels)
            if gap:
                raise NotExportable(
                    f"the ONNX graph of {name} does not reproduce {method} on the training "
                    f"rows: {gap}; {_ALTERNATIVE}"
                )

    def loads(self, data: bytes) -> OnnxModel:
        import onnxruntime

        graph, _ = _unpack(data)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        if "mlserver.inputs" not in meta:  # a graph exported elsewhere, imported as it is
            meta = {**meta, **describe(graph, session)}
        return OnnxModel(session, meta)

    def loads_for_update(self, data: bytes) -> Any:
        _, native = _unpack(data)
        if not native:
            raise ValueError(
                "this ONNX artifact keeps no native model, so it cannot be updated "
                "(OnnxSerializer(keep_native=True) keeps one; a graph imported from "
                "elsewhere has none)"
            )
        return joblib.load(io.BytesIO(native))

    def updatable(self, data: bytes) -> bool:
        return bool(_unpack(data)[1])

    def library_versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime
        import skl2onnx

        return {
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "skl2onnx": skl2onnx.__version__,
        }

    def __repr__(self) -> str:
        return (
            f"OnnxSerializer(intra_op_threads={self.intra_op_threads}, "
            f"inter_op_threads={self.inter_op_threads}, keep_native={self.keep_native})"
        )


def _unpack(data: bytes) -> tuple[bytes, bytes]:
    """The graph and the native model of an artifact; a plain graph (exported elsewhere,
    imported as it is) has no native model."""
    if data[: len(_MAGIC)] != _MAGIC:
        return data, b""
    _, length = _HEADER.unpack_from(data)
    start = _HEADER.size
    return data[start : start + length], data[start + length :]


def _name(model: Any) -> str:
    return type(model).__name__


def _kind(model: Any) -> str:
    if is_classifier(model):
        return "classifier"
    if is_regressor(model):
        return "regressor"
    if is_clusterer(model):
        return "clusterer"
    if is_outlier_detector(model):
        return "outlier"
    return "transformer"


def _final_step(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return _final_step(steps[-1][1]) if steps else model


def _inputs(schema: Any) -> list[dict[str, str]]:
    """The graph's inputs: one float tensor, or one tensor per column when any is a string."""
    dtypes = [pd.api.types.pandas_dtype(t) for t in schema.dtypes]
    if all(pd.api.types.is_numeric_dtype(t) for t in dtypes):
        return [{"name": "input", "type": "float", "columns": [str(c) for c in schema.columns]}]
    inputs = []
    for column, dtype in zip(schema.columns, dtypes, strict=True):
        if pd.api.types.is_integer_dtype(dtype):
            kind = "int64"
        elif pd.api.types.is_numeric_dtype(dtype):
            kind = "float"
        else:
            kind = "string"
        inputs.append({"name": str(column), "type": kind, "columns": [str(column)]})
    return inputs


def _allowed_options(model: Any) -> set[str]:
    """The conversion options skl2onnx's converter for this estimator takes (e.g. LinearSVC
    takes `raw_scores` but not `zipmap`, and raises for an option it does not take)."""
    from skl2onnx import get_model_alias
    from skl2onnx.common._registration import get_converter

    try:
        return set(get_converter(get_model_alias(type(model))).get_allowed_options() or ())
    except Exception:  # not registered: the conversion itself will say so
        return set()


def _options(model: Any, kind: str) -> dict[str, Any]:
    """Options for the final step: plain probabilities, or the raw scores where the model's
    `decision_function` is what the graph's score output should give."""
    if kind != "classifier":
        return {}
    allowed = _allowed_options(_final_step(model))
    options: dict[str, Any] = {}
    if "zipmap" in allowed:
        # NOTE: without zipmap, probabilities come as one float array instead of a list of
        # dicts (measured 1.9 ms vs 0.1 ms for 10k rows).
        options["zipmap"] = False
    if "raw_scores" in allowed and _scores_serve_decision(model):
        options["raw_scores"] = True
    return options


def _scores_serve_decision(model: Any) -> bool:
    """A classifier's score output gives `decision_function` only when it has no
    `predict_proba` (one graph, one score output: probabilities win)."""
    return not has_method(model, "predict_proba") and has_method(model, "decision_function")


def _methods(model: Any, kind: str, outputs: list[tuple[str, bool]]) -> dict[str, Any]:
    """Which graph output serves each of the model's own methods.

    `outputs` are the graph's (name, is a tensor) pairs. A method the model lacks is never
    served; one the graph gives no output for is not served either (the service answers 400).
    """
    tensors = [name for name, tensor in outputs if tensor]
    found: dict[str, Any] = {}

    def output(*names: str) -> str | None:
        return next((n for n in names if n in tensors), None)

    binary = kind == "classifier" and len(np.ravel(getattr(model, "classes_", ()))) == 2
    label = output("label", "output_label")
    scores = output("probabilities", "output_probability")
    if has_method(model, "predict") and tensors:
        if kind == "regressor":
            found["predict"] = {"output": tensors[0]}
        elif label is not None or kind == "classifier":
            found["predict"] = {"output": label or tensors[0]}
    if has_method(model, "predict_proba") and scores is not None:
        found["predict_proba"] = {"output": scores}
    elif kind == "classifier" and scores is not None and _scores_serve_decision(model):
        found["decision_function"] = {"output": scores, "binary": binary}
    if kind == "outlier" and has_method(model, "decision_function") and output("scores"):
        found["decision_function"] = {"output": "scores", "binary": True}
    if has_method(model, "transform") and tensors:
        if kind == "clusterer":
            if output("scores") is not None:
                found["transform"] = {"output": "scores"}
        elif kind == "transformer" and label is None:
            found["transform"] = {"output": tensors[0]}
    return found


def _export(model: Any, schema: Any, target_opset: int | None) -> bytes:
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    tensor = {"float": FloatTensorType, "int64": Int64TensorType, "string": StringTensorType}
    inputs = _inputs(schema)
    initial_types = [
        (spec["name"], tensor[spec["type"]]([None, len(spec["columns"])])) for spec in inputs
    ]
    kind = _kind(model)
    options = _options(model, kind)
    try:
        graph = _convert(model, initial_types, options, target_opset)
    except Exception as exc:  # skl2onnx raises many types, all meaning "cannot convert"
        raise NotExportable(
            f"skl2onnx cannot export {_name(model)}: {brief(exc)}; {_ALTERNATIVE}"
        ) from None
    outputs = [(o.name, o.type.HasField("tensor_type")) for o in graph.graph.output]
    methods = _methods(model, kind, outputs)
    if not methods:
        own = [m for m in METHODS if has_method(model, m)] or ["none of predict/transform"]
        raise NotExportable(
            f"the ONNX graph of {_name(model)} gives none of its methods "
            f"({', '.join(own)}); {_ALTERNATIVE}"
        )
    meta = {
        "mlserver.kind": kind,
        "mlserver.name": _name(model),
        "mlserver.allow_nan": orjson.dumps(_allows_nan(model)).decode(),
        "mlserver.inputs": orjson.dumps(inputs).decode(),
        "mlserver.methods": orjson.dumps(methods).decode(),
    }
    if kind == "classifier":
        meta["mlserver.classes"] = orjson.dumps(
            np.asarray(model.classes_).tolist(), option=orjson.OPT_SERIALIZE_NUMPY
        ).decode()
    names = _feature_names_out(model) if "transform" in methods else None
    if names is not None:
        meta["mlserver.feature_names_out"] = orjson.dumps(names).decode()
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    return graph.SerializeToString()


def _convert(
    model: Any, initial_types: list[Any], options: dict[str, Any], target_opset: Any
) -> Any:
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version

    def convert(opset: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert_sklearn(
                model,
                initial_types=initial_types,
                options={id(_final_step(model)): options} if options else None,
                target_opset=opset,
            )

    try:
        return convert(target_opset)
    except RuntimeError as exc:
        # NOTE: some converters (IsolationForest) do not support the newest ai.onnx.ml opset
        # yet and say which one they need; the default opset then tries that one.
        if target_opset is not None or "'ai.onnx.ml': 3" not in str(exc):
            raise
        return convert({"": get_latest_tested_opset_version(), "ai.onnx.ml": 3})


def _allows_nan(model: Any) -> bool:
    """Whether the estimator itself takes missing values (scikit-learn's `allow_nan` tag)."""
    from sklearn.utils import get_tags

    try:
        return bool(get_tags(model).input_tags.allow_nan)
    except Exception:  # not a scikit-learn estimator with tags: refuse NaN, as most do
        return False


def _feature_names_out(model: Any) -> list[str] | None:
    names = getattr(model, "get_feature_names_out", None)
    if not callable(names):
        return None
    try:
        return [str(n) for n in np.asarray(names()).tolist()]
    except Exception:  # not every transformer can name them
        return None
