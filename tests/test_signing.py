"""Signed blobs: nothing is deserialized unless this server (or one holding its keys) wrote it."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import falcon.testing
import joblib
import pytest
from playhouse import db_url

from mlserver import create_app
from mlserver.cli import main
from mlserver.errors import ConfigurationError, IntegrityError, SignatureMismatch
from mlserver.signing import Placement, Signer, Verified, parse_signing_keys
from mlserver.store import SQLStore
from mlserver.store._tables import TABLE_NAME, make_version_table
from support import ServerProcess, fit_body, predict, registry, regression, train

OLD = ("retired", "an-old-secret-of-32-characters!!")
NEW = ("current", "a-new-secret-of-32-characters!!!")


class Evil:
    """Unpickling this creates a file: a stand-in for anything else a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def evil_blob(marker: Path) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(Evil(marker), buffer)
    return buffer.getvalue()


def client_of(url: str, **options) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(registry(), SQLStore(url), **options))


def finished(client, model: str = "linreg", **params) -> str:
    """Fit `model` on the regression data through HTTP; the key once its version FINISHED."""
    key, state = train(client, model, *regression(), expect=(200, 202), **params)
    assert state["status"] == "FINISHED", state
    return key


#: What the predictions here send: three rows of the regression data.
FEW = regression()[0].head(3)


def assert_refused(url: str, key: str, ending: str, **options) -> None:
    """A fresh app on `url` (`options` go to create_app) answers a predict of `key` with a 500
    whose description ends with `ending`."""
    server = client_of(url, **options)
    try:
        refused = predict(server, "linreg", key, FEW)
        assert refused.status_code == 500
        assert refused.json["description"].endswith(ending)
    finally:
        server.app.close()


def overwrite_blob(url: str, model: str, key: str, blob: bytes, **columns) -> None:
    """Replace a stored blob as someone with write access to the database could, sha256
    recomputed so the store's own check passes."""
    db = db_url.connect(url)
    rows = make_version_table(db)
    with db.connection_context():
        updated = (
            rows.update(blob=blob, sha256=hashlib.sha256(blob).hexdigest(), **columns)
            .where((rows.model == model) & (rows.key == key))
            .execute()
        )
    db.close()
    assert updated == 1


def stored_signature(url: str, model: str, key: str) -> str | None:
    store = SQLStore(url)
    try:
        return store.newest(model, key).signature
    finally:
        store.close()


def test_jobs_sign_and_predictions_verify(sqlite_url):
    """A job stores its blob with a signature under the first key; predictions load it."""
    client = client_of(sqlite_url, signing_keys=dict([NEW, OLD]))
    try:
        key = finished(client)
        signature = stored_signature(sqlite_url, "linreg", key)
        assert re.fullmatch(r"current:v2:[0-9a-f]{64}", signature)
        assert predict(client, "linreg", key, FEW).status_code == 200
    finally:
        client.app.close()


def test_a_malicious_pickle_is_refused_and_never_runs(store_url, tmp_path):
    """A pickle written straight into the database (sha256 recomputed, signature kept) is a
    500 for predict and for PATCH alike, and its code never runs; without keys it would."""
    trainer = client_of(store_url, signing_keys=dict([NEW]))
    try:
        linreg, sgd = finished(trainer), finished(trainer, "sgd")
    finally:
        trainer.app.close()
    marker = tmp_path / "pwned"
    for model, key in (("linreg", linreg), ("sgd", sgd)):
        overwrite_blob(store_url, model, key, evil_blob(marker))

    server = client_of(store_url, signing_keys=dict([NEW]))
    try:
        refused = predict(server, "linreg", linreg, FEW)
        assert refused.status_code == 500
        assert refused.json == {
            "title": "Stored model failed verification",
            "description": f"stored model linreg/{linreg} v1 does not match its signature; "
            "not loaded",
        }
        x, y = regression()
        patch = server.simulate_patch("/sgd", json=fit_body(x, y, **{"model-key": sgd}))
        assert patch.status_code == 500 and "signature" in patch.json["description"]
        status = server.simulate_get("/sgd", params={"model-key": sgd}).json
        assert status["version"] == 1  # the refused update started no job
        assert not marker.exists()
    finally:
        server.app.close()

    unguarded = client_of(store_url)  # the same bytes, on a server without keys
    try:
        predict(unguarded, "linreg", linreg, FEW)
        assert marker.exists()
    finally:
        unguarded.app.close()


def test_unsigned_versions_are_refused_once_keys_are_set(sqlite_url):
    """A version stored before signing was turned on has no signature and is not loaded."""
    before = client_of(sqlite_url)
    try:
        key = finished(before)
    finally:
        before.app.close()
    assert stored_signature(sqlite_url, "linreg", key) is None
    assert_refused(sqlite_url, key, "has no signature; not loaded", signing_keys=dict([NEW]))


def test_rotation_old_key_verifies_new_key_signs(sqlite_url):
    """With keys [new, old], versions signed with old still load and new ones are signed with
    new; once old is dropped, its versions are refused without naming the key."""
    first = client_of(sqlite_url, signing_keys=dict([OLD]))
    try:
        before = finished(first, name="before")
    finally:
        first.app.close()
    assert stored_signature(sqlite_url, "linreg", before).startswith("retired:")

    rotating = client_of(sqlite_url, signing_keys=dict([NEW, OLD]))
    try:
        assert predict(rotating, "linreg", before, FEW).status_code == 200
        after = finished(rotating, name="after")
    finally:
        rotating.app.close()
    assert stored_signature(sqlite_url, "linreg", after).startswith("current:")

    rotated = client_of(sqlite_url, signing_keys=dict([NEW]))
    try:
        assert predict(rotated, "linreg", after, FEW).status_code == 200
        refused = predict(rotated, "linreg", before, FEW)
        assert refused.status_code == 500
        description = refused.json["description"]
        assert description.endswith("is signed with a key this server does not hold; not loaded")
        assert "retired" not in description
    finally:
        rotated.app.close()


WHERE = {
    "model": "linreg",
    "key": "k1",
    "version": 1,
    "serializer": "joblib",
    "row_id": 7,
    "created": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
    "metadata": {"features": {"columns": ["u", "v"]}, "targets": ["y"], "user": {"a": 1}},
}


@pytest.mark.parametrize(
    "elsewhere",
    [
        {"model": "other"},
        {"key": "k2"},
        {"version": 2},
        {"serializer": "onnx"},
        {"row_id": 8},
        {"created": WHERE["created"] + timedelta(microseconds=1)},
        {"metadata": {**WHERE["metadata"], "features": {"columns": ["v", "u"]}}},
        {"metadata": {**WHERE["metadata"], "targets": ["z"]}},
        {"metadata": {**WHERE["metadata"], "libraries": {"scikit-learn": "0.1"}}},
    ],
)
def test_a_signature_holds_only_where_it_was_made(elsewhere):
    """A signed blob moved to another model, key, version, row, creation time, serializer or
    loading metadata fails; bytes changed by one bit fail; the exception is an
    IntegrityError the HTTP layer maps to 500."""
    signer = Signer(dict([NEW, OLD]))
    blob = b"model bytes" * 100
    signature = signer.sign(blob, Placement(**WHERE))
    assert signer.verify(blob, signature, Placement(**WHERE)) == Verified(legacy=False)
    with pytest.raises(SignatureMismatch):
        signer.verify(blob, signature, Placement(**{**WHERE, **elsewhere}))
    with pytest.raises(IntegrityError):
        signer.verify(blob[:-1] + b"t", signature, Placement(**WHERE))
    with pytest.raises(SignatureMismatch):
        signer.verify(blob, signature[:-1] + "0", Placement(**WHERE))


def test_metadata_outside_the_loading_entries_is_not_covered():
    """Metadata that does not drive loading (the wrapper's own) may change without voiding
    the signature, and the same time given naive or aware in UTC is the same time."""
    signer = Signer(dict([NEW]))
    signature = signer.sign(b"bytes", Placement(**WHERE))
    moved = {
        **WHERE,
        "metadata": {**WHERE["metadata"], "user": {"a": 2}},
        "created": WHERE["created"].replace(tzinfo=None),
    }
    signer.verify(b"bytes", signature, Placement(**moved))


def legacy_signature(secret: str, blob: bytes, model: str, key: str, version: int) -> str:
    """A signature as release 0.1.0 made it (model, key, version and serializer only)."""
    context = json.dumps([model, key, version, "joblib"], separators=(",", ":")).encode()
    mac = hmac.new(secret.encode(), b"mlserver-blob-v1\n" + context + b"\n", hashlib.sha256)
    mac.update(blob)
    return f"{NEW[0]}:{mac.hexdigest()}"


def test_a_replayed_blob_of_a_deleted_key_is_refused(store_url):
    """An attacker with write access saves a signed v1 (blob and signature), waits for the
    key to be deleted and trained again, then writes them into the new v1 row: the server
    refuses it, since the signature is bound to the old row; the new v1 itself serves."""
    client = client_of(store_url, signing_keys=dict([NEW]))
    try:
        key = finished(client, name="replayed")
        store = SQLStore(store_url)
        old = store.newest("linreg", key)
        saved_blob, saved_signature = store.load_blob(old), old.signature
        assert client.simulate_delete("/linreg", params={"model-key": key}).status_code == 200
        assert finished(client, name="replayed", modkwargs={"fit_intercept": False}) == key
        new = store.newest("linreg", key)
        store.close()
        assert new.version == 1 and new.id != old.id
        assert predict(client, "linreg", key, FEW).status_code == 200
    finally:
        client.app.close()
    overwrite_blob(store_url, "linreg", key, saved_blob, signature=saved_signature)
    ending = "does not match its signature; not loaded"
    assert_refused(store_url, key, ending, signing_keys=dict([NEW]))


def test_signatures_of_release_0_1_0_verify_once_and_are_re_signed(store_url, caplog):
    """A version signed in the 0.1.0 form still loads, with a warning, and its signature is
    replaced by one bound to its row; with legacy=False such a version is refused."""
    client = client_of(store_url, signing_keys=dict([NEW]))
    try:
        key = finished(client)
    finally:
        client.app.close()
    store = SQLStore(store_url)
    version = store.newest("linreg", key)
    blob = store.load_blob(version)
    store.close()
    old_form = legacy_signature(NEW[1], blob, "linreg", key, 1)
    overwrite_blob(store_url, "linreg", key, blob, signature=old_form)

    strict = client_of(store_url, signing_keys=Signer(dict([NEW]), legacy=False))
    try:
        refused = predict(strict, "linreg", key, FEW)
        assert refused.status_code == 500
        assert "signature of release 0.1.0" in refused.json["description"]
    finally:
        strict.app.close()

    upgrading = client_of(store_url, signing_keys=dict([NEW]))
    try:
        with caplog.at_level("WARNING", logger="mlserver.signing"):
            assert predict(upgrading, "linreg", key, FEW).status_code == 200
        assert "event=signature_legacy" in caplog.text
    finally:
        upgrading.app.close()
    upgraded = stored_signature(store_url, "linreg", key)
    assert upgraded.startswith("current:v2:") and upgraded != old_form
    strict = client_of(store_url, signing_keys=Signer(dict([NEW]), legacy=False))
    try:
        assert predict(strict, "linreg", key, FEW).status_code == 200
    finally:
        strict.app.close()


@pytest.mark.slow
def test_serve_without_signing_keys_warns_signing_off(tmp_path):
    """`ml-server serve` without signing keys logs "signing off" at warning level at start
    (the default log level shows it); with keys it does not."""
    url = f"sqlite:///{tmp_path / 'models.db'}"
    for env, expected in (({}, True), ({"MLSERVER_SIGNING_KEYS": ":".join(NEW)}, False)):
        server = ServerProcess(url, env=env, stderr=True)
        server.terminate()
        _, err = server.process.communicate(timeout=60)  # raw: communicate() hides the line
        lines = [line for line in err.splitlines() if "event=signing_off" in line]
        assert bool(lines) is expected, err
        if expected:
            assert "level=warning" in lines[0] and "signing off" in lines[0]


@pytest.mark.parametrize(
    ("keys", "needle"),
    [
        ([], "at least one key"),
        ([("k", "short")], "shorter than 16 bytes"),
        ([("bad id", NEW[1])], "must be 1 to 64 letters"),
        ([NEW, ("current", OLD[1])], "given twice"),
    ],
)
def test_bad_keys_are_configuration_errors(sqlite_url, keys, needle):
    """No key, a short secret, a malformed or repeated id is refused when the app is built."""
    with pytest.raises(ConfigurationError, match=needle) as raised:
        create_app(registry(), SQLStore(sqlite_url), signing_keys=keys)
    assert all(secret not in str(raised.value) for _, secret in (NEW, OLD))


def test_key_text_format_never_echoes_secrets():
    """`id:secret` entries split on commas, spaces and lines; errors and repr hide secrets."""
    text = f"# rotation\n{NEW[0]}:{NEW[1]}, {OLD[0]}:{OLD[1]}\n"
    assert parse_signing_keys(text) == [NEW, OLD]
    signer = Signer(parse_signing_keys(text))
    assert signer.signing_key == "current" and signer.key_ids == ("current", "retired")
    assert NEW[1] not in repr(signer)
    with pytest.raises(ConfigurationError, match="entry 2 is not of the form id:secret") as bad:
        parse_signing_keys(f"{NEW[0]}:{NEW[1]},{OLD[1]}")
    assert OLD[1] not in str(bad.value)
    with pytest.raises(ConfigurationError, match="no signing keys"):
        parse_signing_keys("  # nothing\n")


def test_a_table_from_before_signatures_gains_the_column(store_url):
    """A versions table created without the signature column gets it on first use, keeping
    its rows."""
    store = SQLStore(store_url)
    store.ping()  # creates the current table
    store.close()
    db = db_url.connect(store_url)
    with db.connection_context():
        db.execute_sql(f"ALTER TABLE {TABLE_NAME} DROP COLUMN signature")
        assert "signature" not in {c.name for c in db.get_columns(TABLE_NAME)}
    db.close()

    client = client_of(store_url, signing_keys=dict([NEW]))
    try:
        key = finished(client)
        assert predict(client, "linreg", key, FEW).status_code == 200
    finally:
        client.app.close()
    assert stored_signature(store_url, "linreg", key).startswith("current:")


def test_cli_bad_signing_keys_are_one_line_without_the_secret(monkeypatch, capsys):
    """A malformed MLSERVER_SIGNING_KEYS exits 2 with one line that does not show the secret."""
    monkeypatch.setenv("MLSERVER_SIGNING_KEYS", "k1:tooshort-secret-x,k1:again-a-long-secret")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err == "mlserver: error: MLSERVER_SIGNING_KEYS: signing key id 'k1' is given twice\n"
    monkeypatch.setenv("MLSERVER_SIGNING_KEYS", "k1:tiny")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "shorter than 16 bytes" in err and "tiny" not in err


@pytest.mark.slow
def test_cli_signs_with_the_first_key_of_the_environment(tmp_path):
    """`ml-server serve` with MLSERVER_SIGNING_KEYS stores signatures of the first key."""
    url = f"sqlite:///{tmp_path / 'models.db'}"
    server = ServerProcess(
        url, env={"MLSERVER_SIGNING_KEYS": f"{NEW[0]}:{NEW[1]},{OLD[0]}:{OLD[1]}"}
    )
    try:
        key = finished(server)
        assert stored_signature(url, "linreg", key).startswith("current:")
    finally:
        server.stop()
