"""What an ONNX graph exported elsewhere serves, read from the graph itself.

Graphs this server exports carry their method table in their metadata (`mlserver.*`); a
graph from skl2onnx, MLflow or any other exporter does not. Its inputs and outputs say
enough to serve it as `OnnxModel` does ours:

- One input of shape `[N, k]` takes the k columns of x in training order; several inputs of
  shape `[N, 1]` (or `[N]`) take one column each, named after the input.
- A classifier graph (a label output and a probability output, as skl2onnx writes them,
  with or without ZipMap, its class labels in the graph) serves `predict`, and
  `predict_proba` where that output gives a distribution over the classes (checked on a
  probe row, and on every answer); any other graph serves its first output as `predict`.
- NaN in x is refused: how the graph treats missing values is unknown.

Nothing here guesses further than that; a graph it cannot map is refused when imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from mlserver.serializers.onnx_model import INPUT_DTYPES, is_distribution

__all__ = ["describe"]

#: ONNX tensor element types this server feeds, as `OnnxModel` names them.
INPUT_TYPES = {
    "tensor(float)": "float",
    "tensor(double)": "double",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}
_LABEL_TYPES = ("tensor(int64)", "tensor(int32)", "tensor(string)")
_SCORE_TYPES = ("tensor(float)", "tensor(double)")
#: Node attributes that hold a classifier's labels, in skl2onnx's ai.onnx.ml operators.
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


def describe(graph: bytes, session: Any) -> dict[str, str]:
    """The `mlserver.*` metadata `OnnxModel` serves a graph with; ValueError naming what
    in the graph cannot be served."""
    inputs = [_input(node) for node in session.get_inputs()]
    if len(inputs) > 1 and any(spec["width"] != 1 for spec in inputs):
        raise ValueError(
            "the graph has several inputs, not all of one column: only one [N, k] input "
            "or one [N, 1] input per column can be fed"
        )
    if len(inputs) == 1 and inputs[0]["width"] == 1 and inputs[0]["rank"] == 1:
        inputs[0]["columns"] = [inputs[0]["name"]]
    if len(inputs) > 1:
        for spec in inputs:
            spec["columns"] = [spec["name"]]
    outputs = [(node.name, node.type) for node in session.get_outputs()]
    if not outputs:
        raise ValueError("the graph has no outputs")
    classes = _classes(graph)
    meta: dict[str, str] = {
        "mlserver.name": "the imported ONNX graph",
        "mlserver.allow_nan": "false",
        "mlserver.inputs": orjson.dumps(inputs).decode(),
    }
    label = next((name for name, kind in outputs if kind in _LABEL_TYPES), None)
    scores = next(
        (
            (name, kind)
            for name, kind in outputs
            if name != label and (kind in _SCORE_TYPES or kind.startswith("seq(map("))
        ),
        None,
    )
    if classes is not None and label is not None and scores is not None:
        methods: dict[str, Any] = {"predict": {"output": label}}
        proba: dict[str, Any] = {"output": scores[0], "distribution": True}
        if scores[1].startswith("seq(map("):
            proba["zipmap"] = True
        # NOTE: skl2onnx names a classifier's second output "probabilities" even where
        # it holds decision scores (LinearSVC, RidgeClassifier, SVC without probability):
        # only an output that gives a distribution over the classes is predict_proba.
        if _distribution(session, inputs, proba, classes):
            methods["predict_proba"] = proba
        meta["mlserver.kind"] = "classifier"
        meta["mlserver.classes"] = orjson.dumps(classes).decode()
    else:
        first, kind = outputs[0]
        if not kind.startswith("tensor("):
            raise ValueError(f"the graph's first output {first!r} is a {kind}, not a tensor")
        methods = {"predict": {"output": first}}
        meta["mlserver.kind"] = "labels" if kind in _LABEL_TYPES else "regressor"
    meta["mlserver.methods"] = orjson.dumps(methods).decode()
    return meta


def _distribution(
    session: Any, inputs: list[dict[str, Any]], spec: dict[str, Any], classes: list[Any]
) -> bool:
    """Whether the score output gives a distribution on a probe row (zeros, empty strings)."""
    feed = {}
    for node, entry in zip(session.get_inputs(), inputs, strict=True):
        shape = (1,) if entry["rank"] == 1 else (1, entry["width"])
        if entry["type"] == "string":
            feed[node.name] = np.full(shape, "", dtype=object)
        else:
            feed[node.name] = np.zeros(shape, dtype=INPUT_DTYPES[entry["type"]])
    try:
        values = session.run([spec["output"]], feed)[0]
    except Exception:  # onnxruntime's own errors: a graph this probe cannot run
        return False
    if spec.get("zipmap"):
        values = [[row.get(c, np.nan) for c in classes] for row in values]
    return is_distribution(np.asarray(values))


def _input(node: Any) -> dict[str, Any]:
    kind = INPUT_TYPES.get(node.type)
    if kind is None:
        known = ", ".join(INPUT_TYPES)
        raise ValueError(f"the graph's input {node.name!r} is a {node.type}; fed are: {known}")
    shape = list(node.shape)
    if len(shape) == 1:
        width = 1
    elif len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
        width = shape[1]
    else:
        raise ValueError(
            f"the graph's input {node.name!r} has shape {shape}: one [N, k] tensor with a "
            "fixed k, or [N, 1] tensors, can be fed"
        )
    return {"name": node.name, "type": kind, "columns": None, "width": width, "rank": len(shape)}


def _classes(graph: bytes) -> list[Any] | None:
    """The class labels a classifier graph declares (its ZipMap's, else its classifier
    operator's), or None."""
    import onnx

    model = onnx.load_from_string(graph)
    found = None
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name not in _CLASS_ATTRIBUTES:
                continue
            values = onnx.helper.get_attribute_value(attribute)
            labels = [v.decode() if isinstance(v, bytes) else int(v) for v in values]
            if node.op_type == "ZipMap":
                return labels
            found = labels
    return found
