"""Artifact formats: the serializers a model trained elsewhere may come in, and telling
which one a file is. Shared by the server's import and the client, so no heavy imports."""

from __future__ import annotations

from pathlib import PurePath

__all__ = ["FORMATS", "PICKLES", "guess_format"]

#: The serializers an artifact may come in.
FORMATS = ("onnx", "skops", "joblib", "pickle")
#: Those whose loading runs code from the artifact.
PICKLES = frozenset({"joblib", "pickle"})

_EXTENSIONS = {
    ".onnx": "onnx",
    ".skops": "skops",
    ".joblib": "joblib",
    ".pkl": "pickle",
    ".pickle": "pickle",
}
# First bytes of a joblib file: a pickle (protocol 2+), or one of its compressors' streams.
_JOBLIB_MAGIC = (b"\x80", b"\x78", b"\x1f\x8b", b"\xfd7zXZ", b"BZh", b"\x04\x22\x4d\x18")


def guess_format(blob: bytes, filename: str | None = None) -> str | None:
    """The serializer an artifact is in, from its file name's extension, else its first
    bytes; None when neither tells."""
    if filename:
        found = _EXTENSIONS.get(PurePath(filename).suffix.lower())
        if found:
            return found
    if blob[:4] == b"PK\x03\x04":  # a zip archive: skops' format
        return "skops"
    if blob.startswith(_JOBLIB_MAGIC):
        return "joblib"  # NOTE: joblib also loads plain pickles
    if blob[:1] == b"\x08":  # protobuf field 1 (ir_version) as a varint: an ONNX ModelProto
        return "onnx"
    return None
