"""`ml-server import` and `ml-server export` against the store itself, on each backend: joblib,
pickle and skops files with and without a sample, the stored version as the last line of
stdout, refusals that store nothing, signing, and exports byte for byte."""

from __future__ import annotations

import hashlib
import json
import pickle

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge

from mlserver.catalog import catalog
from mlserver.cli import main
from mlserver.frames.keys import artifact_key, name_key
from mlserver.store import SQLStore
from support import classification, in_process, predict, predictions, regression, stored_keys

TREE = "sklearn.tree._tree.Tree"


@pytest.fixture(autouse=True)
def _no_settings_from_outside(monkeypatch):
    for name in ("MLSERVER_STORE", "MLSERVER_TARGET", "MLSERVER_TRUSTED_TYPES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MLSERVER_SIGNING_KEYS", raising=False)
    monkeypatch.delenv("MLSERVER_SIGNING_KEYS_FILE", raising=False)


def imported(capsys, *arguments: str) -> tuple[int, dict | None, str]:
    """Run `ml-server import`: its exit code, the version its last stdout line prints,
    and its stderr."""
    code = main(["import", *arguments])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    return code, json.loads(lines[-1]) if lines else None, err


def test_a_joblib_file_with_a_csv_sample_is_served_as_the_estimator(store_url, tmp_path, capsys):
    x, y = regression()
    forest = RandomForestRegressor(n_estimators=5, random_state=0).fit(x.to_numpy(), y)
    path = tmp_path / "forest.joblib"
    joblib.dump(forest, path)
    x.to_csv(tmp_path / "sample.csv", index=False)
    code, v, err = imported(
        capsys,
        "random-forest-regressor",
        str(path),
        "--sample",
        str(tmp_path / "sample.csv"),
        "--store",
        store_url,
    )
    assert code == 0, err
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert v["model-key"] == artifact_key(sha) and v["sha256"] == sha
    assert (v["status"], v["serializer"], v["lineage"]["kind"]) == ("FINISHED", "joblib", "import")
    # the sample names the columns a model fitted on arrays does not
    assert [f["name"] for f in v["metadata"]["features"]] == list(x.columns)
    assert v["metadata"]["imported"] == {
        "serializer": "joblib",
        "sha256": sha,
        "source": "cli",
        "filename": "forest.joblib",
        "model": "RandomForestRegressor",
    }
    assert f"imported random-forest-regressor {v['model-key']} v1" in err
    with in_process(catalog(), store_url) as client:
        got = predictions(predict(client, "random-forest-regressor", v["model-key"], x))
    np.testing.assert_array_equal(got, forest.predict(x.to_numpy()))
    # again: the version it already is, exit 0
    code, again, err = imported(capsys, "random-forest-regressor", str(path), "--store", store_url)
    assert (code, again["version"]) == (0, 1) and "already stored as" in err


def test_a_pickle_with_a_parquet_sample_under_a_name(store_url, tmp_path, capsys):
    x, y = classification()
    model = LogisticRegression().fit(x, y)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    x.to_parquet(tmp_path / "sample.parquet")
    code, v, err = imported(
        capsys,
        "logistic-regression",
        str(path),
        *("--name", "churn", "--sample", str(tmp_path / "sample.parquet")),
        *("--store", store_url),
    )
    assert code == 0, err
    assert v["model-key"] == name_key("churn") and v["serializer"] == "pickle"
    with in_process(catalog(), store_url) as client:
        got = predictions(predict(client, "logistic-regression", v["model-key"], x))
    np.testing.assert_array_equal(got, model.predict(x))


def test_skops_files_follow_the_trusted_types_setting(store_url, tmp_path, capsys, monkeypatch):
    x, y = regression()
    forest = RandomForestRegressor(n_estimators=3, random_state=0).fit(x, y)
    path = tmp_path / "forest.skops"
    path.write_bytes(skops.io.dumps(forest))
    code, v, err = imported(capsys, "imported", str(path), "--store", store_url)
    assert (code, v) == (2, None)
    assert TREE in err and "not imported" in err
    assert stored_keys(store_url, "imported") == []
    monkeypatch.setenv("MLSERVER_TRUSTED_TYPES", TREE)
    code, v, err = imported(capsys, "imported", str(path), "--store", store_url)
    assert code == 0, err
    assert v["metadata"]["libraries"]["skops"] == skops.__version__


def test_what_is_refused_stores_nothing(store_url, tmp_path, capsys):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x08 this is not a graph")
    code, v, err = imported(capsys, "imported", str(junk), "--store", store_url)
    assert (code, v) == (2, None)
    assert "does not load as onnx" in err
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    code, _, err = imported(capsys, "imported", str(unknown), "--store", store_url)
    assert code == 2 and "name its serializer" in err
    code, _, err = imported(capsys, "nope", str(junk), "--store", store_url)
    assert code == 2 and "unknown model 'nope'" in err
    code, _, err = imported(capsys, "imported", str(tmp_path / "gone.joblib"), "--store", store_url)
    assert code == 2 and "cannot read" in err
    code, _, err = imported(
        capsys, "imported", str(junk), "--sample", str(tmp_path / "none.csv"), "--store", store_url
    )
    assert code == 2 and "no such file" in err
    assert stored_keys(store_url, "imported") == []


def test_export_writes_the_stored_bytes(store_url, tmp_path, capsys, monkeypatch):
    x, y = regression()
    path = tmp_path / "ridge.joblib"
    joblib.dump(Ridge().fit(x, y), path)
    code, v, _ = imported(capsys, "ridge", str(path), "--store", store_url, "--name", "r")
    assert code == 0
    key = v["model-key"]
    out_file = tmp_path / "back.joblib"
    assert main(["export", "ridge", key, "--store", store_url, "-o", str(out_file)]) == 0
    out, err = capsys.readouterr()
    assert out_file.read_bytes() == path.read_bytes()
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert out.split() == [sha, str(out_file), "joblib"]
    assert "wrote" in err
    monkeypatch.chdir(tmp_path)
    assert main(["export", "ridge", key, "--version", "1", "--store", store_url]) == 0
    capsys.readouterr()
    assert (tmp_path / f"ridge-{key}-v1.joblib").read_bytes() == path.read_bytes()
    assert main(["export", "ridge", key, "--version", "2", "--store", store_url]) == 1
    assert "has no version 2" in capsys.readouterr().err


def test_a_signed_store_gets_signed_imports(sqlite_url, tmp_path, capsys, monkeypatch):
    x, y = regression()
    ridge = Ridge().fit(x, y)
    path = tmp_path / "ridge.joblib"
    joblib.dump(ridge, path)
    keys = tmp_path / "keys"
    keys.write_text("k1:0123456789abcdef0123456789abcdef\n")
    code, v, err = imported(
        capsys, "ridge", str(path), "--store", sqlite_url, "--signing-keys-file", str(keys)
    )
    assert code == 0, err
    store = SQLStore(sqlite_url)
    try:
        assert store.version("ridge", v["model-key"], 1).signature.startswith("k1:")
    finally:
        store.close()
    secret = {"k1": "0123456789abcdef0123456789abcdef"}
    with in_process(catalog(), sqlite_url, signing_keys=secret) as client:
        got = predictions(predict(client, "ridge", v["model-key"], x))
    np.testing.assert_array_equal(got, ridge.predict(x))
    # the keys from the variable `serve` reads, too
    monkeypatch.setenv("MLSERVER_SIGNING_KEYS", "k1:0123456789abcdef0123456789abcdef")
    joblib.dump(Ridge(alpha=3).fit(x, y), path)
    code, v, err = imported(capsys, "ridge", str(path), "--store", sqlite_url)
    assert code == 0, err
    with in_process(catalog(), sqlite_url, signing_keys=secret) as client:
        assert predict(client, "ridge", v["model-key"], x).status_code == 200
