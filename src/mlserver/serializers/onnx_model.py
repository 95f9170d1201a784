"""`OnnxModel`: an onnxruntime session behind the scikit-learn methods the service calls.

What serving an ONNX version needs, and no more: no scikit-learn, no skl2onnx.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

__all__ = ["INPUT_DTYPES", "METHODS", "OnnxModel", "brief", "is_distribution"]

#: The methods a graph can serve, as the service names them.
METHODS = ("predict", "predict_proba", "decision_function", "transform")


def brief(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, bounded (onnxruntime's run to several lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _legacy_methods(kind: str, outputs: list[str]) -> dict[str, Any]:
    """The methods of a graph exported before the method set was recorded: the primary ones
    only, which never depended on the estimator's own method set."""
    if kind in ("classifier", "clusterer", "outlier"):
        found = {"predict": {"output": "label" if "label" in outputs else outputs[0]}}
        if kind == "clusterer" and "scores" in outputs:
            found["transform"] = {"output": "scores"}
        return found
    return {"predict" if kind == "regressor" else "transform": {"output": outputs[0]}}


class OnnxModel:
    """An onnxruntime session behind the scikit-learn methods the service calls.

    Only the methods recorded in the graph exist as attributes, so `hasattr`-style checks
    see exactly the estimator's method set; the others raise AttributeError as scikit-learn
    does for a method an estimator lacks.
    """

    def __init__(self, session: Any, meta: dict[str, str]) -> None:
        self.session = session
        self.kind = meta.get("mlserver.kind", "regressor")
        self.inputs = orjson.loads(meta["mlserver.inputs"])
        self.outputs = [o.name for o in session.get_outputs()]
        if "mlserver.methods" in meta:
            self._methods = orjson.loads(meta["mlserver.methods"])
        else:
            self._methods = _legacy_methods(self.kind, self.outputs)
        if "mlserver.classes" in meta:
            self.classes_ = np.asarray(orjson.loads(meta["mlserver.classes"]))
        if "mlserver.feature_names_out" in meta:
            self._names_out = np.asarray(orjson.loads(meta["mlserver.feature_names_out"]))
        #: None for a graph of one positional input (exported elsewhere): it takes x's
        #: columns in the order the service conformed them to.
        self._names: list[str] | None = None
        if all(spec["columns"] is not None for spec in self.inputs):
            self.feature_names_in_ = np.asarray(
                [c for spec in self.inputs for c in spec["columns"]]
            )
            self._names = [str(c) for c in self.feature_names_in_]
        self._single = len(self.inputs) == 1 and self.inputs[0]["type"] in _FLOATS
        self._dtype = _FLOATS.get(self.inputs[0]["type"], np.float32)
        self._model_name = meta.get("mlserver.name", "the model")
        self._allow_nan = orjson.loads(meta.get("mlserver.allow_nan", "false"))

    @property
    def methods(self) -> list[str]:
        """The methods this graph serves, in the service's order."""
        return [m for m in METHODS if m in self._methods]

    @property
    def labels(self) -> bool:
        """Whether `predict` gives labels (compared exactly) rather than values."""
        return self.kind in ("classifier", "clusterer", "outlier", "labels")

    @property
    def takes_arrays(self) -> bool:
        """One float input: the conformed rows as an array are exactly its tensor."""
        return self._single

    def __getattr__(self, name: str) -> Any:
        # NOTE: only reached when normal lookup fails; `vars` avoids recursing before
        # __init__ has set the method table.
        methods = vars(self).get("_methods", {})
        if name in methods:
            return lambda x: self._call(name, x)
        if name == "get_feature_names_out" and "_names_out" in vars(self):
            return lambda input_features=None: self._names_out
        raise AttributeError(f"{type(self).__name__} of this graph has no attribute {name!r}")

    def _call(self, method: str, x: Any) -> np.ndarray:
        spec = self._methods[method]
        values = self._run(spec["output"], x)
        if spec.get("zipmap"):  # a list of {class: probability} dicts, one per row
            values = np.asarray([[row[c] for c in self.classes_.tolist()] for row in values])
        if spec.get("distribution") and not is_distribution(values):
            raise ValueError(
                f"the graph's {spec['output']!r} output does not give probabilities on these "
                "rows (each in [0, 1], summing to 1), so it is not served as predict_proba"
            )
        if method == "predict" and self.labels:
            return np.ravel(values)
        if spec.get("binary") and values.ndim == 2 and values.shape[1] == 2:
            return values[:, 1]  # a binary score is the positive (last) class's, as sklearn's
        return _squeeze(values) if method in ("predict", "decision_function") else values

    def _feed(self, x: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
        """Input tensors straight from the frame's columns, in the training order."""
        # NOTE: a value beyond float32's range casts to infinity, which `_finite` refuses;
        # numpy's overflow warning on the way would only obscure that.
        with np.errstate(over="ignore"):
            return self._tensors(x)

    def _tensors(self, x: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
        if isinstance(x, np.ndarray) and self._single:
            name = self.inputs[0]["name"]
            return {name: self._finite(np.ascontiguousarray(x, dtype=self._dtype))}
        if self._single and (self._names is None or [str(c) for c in x.columns] == self._names):
            # PERF: the service hands over frames already in training order: no column lookup.
            return {self.inputs[0]["name"]: self._finite(x.to_numpy(dtype=self._dtype))}
        feed = {}
        for spec in self.inputs:
            part = x if spec["columns"] is None else x[_labels(x, spec)]
            kind = spec["type"]
            if kind in _FLOATS:
                values = self._finite(part.to_numpy(dtype=_FLOATS[kind]))
            elif kind == "string":
                values = part.astype(str).to_numpy(dtype=object)
            else:
                values = part.to_numpy(dtype=_OTHERS[kind])
            if spec.get("rank") == 1:
                values = values[:, 0]
            feed[spec["name"]] = values
        return feed

    def _finite(self, values: np.ndarray) -> np.ndarray:
        """Refuse what scikit-learn would refuse, and what float32 cannot hold.

        NOTE: a graph computes something for NaN and infinity where the estimator raises,
        and values beyond float32's range (~3.4e38) turn into infinity in the tensor.
        """
        # PERF: one pass over the tensor: ~3 µs for one row, ~22 µs for 10k x 10 (measured).
        if np.isfinite(values).all():
            return values
        if np.isinf(values).any():
            raise ValueError(
                "x has infinite values or values beyond float32's range (about 3.4e38), "
                "which the ONNX graph cannot compute with"
            )
        if not self._allow_nan:
            raise ValueError(f"x has missing values (NaN), which {self._model_name} does not take")
        return values

    def _run(self, output: str, x: Any) -> np.ndarray:
        try:
            return self.session.run([output], self._feed(x))[0]
        except Exception as exc:
            # NOTE: onnxruntime's pybind exceptions (InvalidArgument, Fail, RuntimeException)
            # derive from Exception only; input the graph cannot take is the caller's
            # problem (a 422), not a bug in the server.
            if type(exc).__module__.startswith("onnxruntime"):
                raise ValueError(f"onnxruntime cannot run the graph: {brief(exc)}") from None
            raise


_FLOATS = {"float": np.float32, "double": np.float64}
_OTHERS = {"int64": np.int64, "int32": np.int32, "bool": np.bool_}
#: The numpy dtype of each input type a graph's spec names (but "string": objects).
INPUT_DTYPES = {**_FLOATS, **_OTHERS}


def is_distribution(values: np.ndarray) -> bool:
    """Rows of probabilities: each in [0, 1], summing to 1 (float32's precision)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or not np.isfinite(values).all():
        return False
    in_range = (values >= -1e-6).all() and (values <= 1 + 1e-6).all()
    return bool(in_range and np.allclose(values.sum(axis=1), 1.0, atol=1e-4))


def _labels(x: pd.DataFrame, spec: dict[str, Any]) -> list[Any]:
    """The frame's own labels for the spec's (string) column names."""
    by_name = {str(c): c for c in x.columns}
    return [by_name[c] for c in spec["columns"]]


def _squeeze(values: np.ndarray) -> np.ndarray:
    return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values
