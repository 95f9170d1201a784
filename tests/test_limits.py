"""Input limits: rows and columns of a decoded x above max_rows/max_columns are a 422."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from mlserver.config import Settings
from mlserver.errors import ConfigurationError, UnprocessableData
from mlserver.frames.bulk import _csv_width, decode_bulk
from mlserver.frames.limits import BulkLimits
from support import fit_body, in_process, predict_body, registry, regression, train


@pytest.fixture
def client(sqlite_url):
    """An app that takes at most 50 rows and 3 columns of x."""
    with in_process(registry(), sqlite_url, max_rows=50, max_columns=3) as client:
        yield client


def keys(client, model: str) -> list:
    return client.simulate_get(f"/{model}").json["keys"]


def wide(rows: int, columns: int) -> pd.DataFrame:
    return pd.DataFrame(np.ones((rows, columns)), columns=[f"c{i}" for i in range(columns)])


def test_fit_over_a_limit_is_422_naming_it_and_stores_nothing(client):
    """PUT with more rows or columns than allowed is a 422 naming the limit; nothing is stored."""
    x, y = regression(rows=51)
    response = client.simulate_put("/linreg", json=fit_body(x, y))
    assert response.status_code == 422
    assert response.json["description"] == "x has 51 rows; this server takes at most 50 (max_rows)"
    columns = client.simulate_put("/linreg", json=fit_body(wide(5, 4), y.head(5)))
    assert columns.status_code == 422
    assert (
        "x has 4 columns; this server takes at most 3 (max_columns)"
        in (columns.json["description"])
    )
    assert keys(client, "linreg") == []
    at_limit = client.simulate_put("/linreg", json=fit_body(*regression(rows=50)))
    assert at_limit.status_code == 202


def test_predict_and_update_over_a_limit_are_422(client):
    """POST and PATCH check the same limits after decoding, before any model work."""
    x, y = regression(rows=50)
    key, state = train(client, "sgd", x, y)
    assert state["status"] == "FINISHED"
    big, big_y = regression(rows=60)
    predict = client.simulate_post("/sgd", json=predict_body(key, big))
    assert predict.status_code == 422 and "(max_rows)" in predict.json["description"]
    wider = client.simulate_post("/sgd", json=predict_body(key, wide(2, 4)))
    assert wider.status_code == 422 and "(max_columns)" in wider.json["description"]
    patch = client.simulate_patch("/sgd", json=fit_body(big, big_y, **{"model-key": key}))
    assert patch.status_code == 422 and "(max_rows)" in patch.json["description"]
    assert keys(client, "sgd")[0]["version"] == 1
    fine = client.simulate_post("/sgd", json=predict_body(key, x))
    assert fine.status_code == 200


def test_limits_come_from_settings_and_the_environment():
    """max_rows and max_columns have generous defaults, read MLSERVER_ variables and must be
    positive."""
    defaults = Settings()
    assert defaults.max_rows >= 100_000 and defaults.max_columns >= 1_000
    settings = Settings.from_env({"MLSERVER_MAX_ROWS": "7", "MLSERVER_MAX_COLUMNS": "2"})
    assert (settings.max_rows, settings.max_columns) == (7, 2)
    with pytest.raises(ConfigurationError, match="max_columns"):
        Settings(max_columns=0)


def _stream(batches: list, codec: str | None = None) -> bytes:
    pa = pytest.importorskip("pyarrow")
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    with pa.ipc.new_stream(sink, batches[0].schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


TIGHT = BulkLimits(rows=1000, columns=3, decoded_bytes=20_000)


def test_bulk_limits_are_checked_from_arrow_metadata_before_decoding():
    """An Arrow stream over max_rows (many small batches too), max_columns or
    max_decoded_bytes (a dictionary, a null-type list, zstd zeros) is refused naming the
    limit, and pyarrow allocates next to nothing for it; one within the limits decodes."""
    pa = pytest.importorskip("pyarrow")

    def batch(**columns):
        return pa.record_batch(list(columns.values()), names=list(columns))

    small = batch(a=pa.array(np.zeros(100)))
    values = pa.nulls(200_000)
    cases = {
        "max_rows": _stream([small] * 11),
        "max_columns": _stream([batch(**{c: pa.array([1.0]) for c in "abcd"})]),
        "max_decoded_bytes": _stream(
            [batch(**{c: pa.array(np.zeros(1000)) for c in "abc"})], "zstd"
        ),
        "max_decoded_bytes ": _stream(
            [batch(d=pa.DictionaryArray.from_arrays(pa.array([0]), pa.array(["x" * 200_000])))]
        ),
        "max_decoded_bytes  ": _stream(
            [batch(l=pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values))]
        ),
    }
    for limit, raw in cases.items():
        before = pa.total_allocated_bytes()
        with pytest.raises(UnprocessableData, match=rf"\({limit.strip()}\)$"):
            decode_bulk(raw, "arrow", limits=TIGHT)
        assert pa.total_allocated_bytes() - before < 10_000
    fine = decode_bulk(_stream([small] * 10), "arrow", limits=TIGHT)
    assert fine.array.shape == (1000, 1)


def test_bulk_limits_are_checked_from_parquet_and_csv_before_parsing():
    """Parquet rows and columns come from its footer; a CSV's header width and line count
    are checked before pandas parses it, and it parses at most max_rows + 1 rows."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": np.zeros(1001)}), sink)
    with pytest.raises(UnprocessableData, match=r"x has 1001 rows; .* at most 1000 \(max_rows\)"):
        decode_bulk(sink.getvalue().to_pybytes(), "parquet", limits=TIGHT)
    csv_cases = {
        b"a,b,c,d\n1,2,3,4\n": "max_columns",
        b"a\n" + b"1\n" * 1001: "max_rows",
        b"a,b\n" + b",\n" * 999: "max_decoded_bytes",  # 1 KB of empty cells, NaN each
    }
    for raw, limit in csv_cases.items():
        with pytest.raises(UnprocessableData, match=rf"\({limit}\)$"):
            decode_bulk(raw, "csv", limits=TIGHT)
    assert decode_bulk(b"a\n" + b"1\n" * 1000, "csv", limits=TIGHT).frame.shape == (1000, 1)


def test_csv_header_width_is_counted_as_pandas_reads_it():
    """Quoted commas are one field, a quote inside a field hides no comma, blank lines before
    the header are skipped: the width checked before parsing is the width pandas reads."""
    for text in (
        b'a,"b,c",d\n1,2,3\n',
        b'a,x"y,z"w,q\n1,2,3,4\n',
        b"\n \n\t\r\na,b\n1,2\n",
        b'"a""b",c\r\n1,2\r\n',
    ):
        assert _csv_width(text, 100) == len(pd.read_csv(io.BytesIO(text)).columns), text


def test_bulk_body_over_a_limit_is_a_422_through_the_app(client):
    """An Arrow PUT with more rows than max_rows is a 422 naming it, and nothing is stored."""
    pa = pytest.importorskip("pyarrow")
    raw = _stream([pa.record_batch([pa.array(np.zeros(51))] * 2, names=["u", "target"])], "zstd")
    response = client.simulate_put(
        "/linreg",
        body=raw,
        params={"target": "target"},
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
    )
    assert response.status_code == 422
    assert response.json["description"].endswith("at most 50 (max_rows)")
    assert keys(client, "linreg") == []
