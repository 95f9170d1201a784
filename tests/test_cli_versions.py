"""`ml-server versions MODEL KEY`: a key's history read from a real store (SQLite file and
PostgreSQL) whose versions were made through the app, as a table, as JSON lines, and its
errors."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from mlserver.cli import main
from support import (
    ML_SERVER,
    classification,
    in_process,
    raw_sql,
    registry,
    request,
    server_environment,
    train,
)


@pytest.fixture
def history(store_url: str) -> tuple[str, str, list[dict]]:
    """A logreg key with three versions made through the app: a validated fit (served, also
    "champion"), a FAILED retrain, and a candidate; (store URL, key, GET /versions body)."""
    x, y = classification(rows=80)
    with in_process(registry(), store_url) as client:
        key, state = train(client, "logreg", x, y, name="cli", validation=0.25, scoring="accuracy")
        assert state["status"] == "FINISHED"
        train(client, "logreg", x, y, name="cli", retrain=True, algkwargs={"epochs": 1})
        train(client, "logreg", x, y, name="cli", retrain=True, promote="never")
        moved = client.simulate_put(f"/logreg/{key}/aliases/champion", json={"version": 1})
        assert moved.status_code == 200, moved.text
        listed = client.simulate_get(f"/logreg/{key}/versions")
        assert listed.status_code == 200, listed.text
        assert request(client, "GET", "logreg").status_code == 200
    return store_url, key, listed.json["versions"]


def test_table_lists_versions_newest_first_with_aliases(history, capsys):
    """One row per version, newest first: number, status, aliases, finish time, validation
    score with its scorer, size; then the key's aliases."""
    url, key, versions = history
    assert main(["versions", "logreg", key, "--store", url]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "STATUS", "ALIASES", "FINISHED", "VALIDATION", "SIZE"]
    rows = [line.split() for line in lines[1:4]]
    assert [row[:3] for row in rows] == [
        ["3", "FINISHED", "-"],
        ["2", "FAILED", "-"],
        ["1", "FINISHED", "champion,served"],
    ]
    by_number = {v["version"]: v for v in versions}
    for row in rows:
        finished = by_number[int(row[0])]["finished"][:19].replace("T", " ") + "Z"
        assert " ".join(row[3:5]) == finished
    assert rows[1][5:] == ["-", "-"]  # a failed version has no score and no size
    score = by_number[1]["metrics"]["validation"]["score"]
    assert rows[2][5:7] == [f"{score:.4g}", "accuracy"]
    assert re.fullmatch(r"\d+\.\d KiB", " ".join(rows[2][7:])), rows[2]
    assert lines[4] == "aliases: champion -> 1, served -> 1"
    assert len(lines) == 5


def test_json_prints_each_version_as_the_http_api_does(history, capsys):
    """--json: one JSON object per line, equal to the entries of GET /{model}/{key}/versions."""
    url, key, versions = history
    assert main(["versions", "logreg", key, "--store", url, "--json"]) == 0
    out, _ = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == versions


def test_limit_shows_the_newest_and_says_more_exist(history, capsys):
    """--limit 2 prints the two newest versions and a line saying older ones were left out."""
    url, key, _ = history
    assert main(["versions", "logreg", key, "--store", url, "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["3", "2"]
    assert lines[3].startswith("aliases: ")
    assert lines[4] == "(older versions not shown: --limit 2)"
    assert main(["versions", "logreg", key, "--store", url, "--limit", "3", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_an_unknown_key_is_one_line_and_exit_1(history, capsys):
    """A key (or model) without versions: nothing on stdout, one line naming it, exit 1."""
    url, key, _ = history
    assert main(["versions", "logreg", "0" * 32, "--store", url]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("mlserver: error: model-key 00000000") and err.count("\n") == 1
    assert main(["versions", "linreg", key, "--store", url]) == 1
    assert "of model linreg has no versions" in capsys.readouterr().err


def test_a_key_no_store_can_hold_is_a_usage_error(history, capsys):
    """A KEY with a NUL character is one line naming the model-key, exit 2, no traceback."""
    url, _, _ = history
    assert main(["versions", "logreg", "a\x00b", "--store", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlserver: error: model-key must not") and "Traceback" not in err


def test_a_missing_sqlite_file_is_refused_not_created(tmp_path, capsys):
    """A store file that does not exist is a usage error (exit 2), and stays absent."""
    missing = tmp_path / "typo.db"
    assert main(["versions", "logreg", "0" * 32, "--store", f"sqlite:///{missing}"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not missing.exists()


def test_bad_limit_is_a_usage_error(capsys):
    """--limit must be a whole number of at least 1."""
    assert main(["versions", "logreg", "k", "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err


def test_a_newer_schema_is_refused_naming_both_versions(history, capsys):
    """A database written by a newer mlserver is refused with exit 2 and both versions."""
    url, key, _ = history
    raw_sql(url, "UPDATE mlserver_schema SET version = 4")
    try:
        assert main(["versions", "logreg", key, "--store", url]) == 2
    finally:  # NOTE: the PostgreSQL database outlives the test
        raw_sql(url, "UPDATE mlserver_schema SET version = 3")
    err = capsys.readouterr().err
    assert "4" in err and "(3)" in err and "upgrade" in err


@pytest.mark.slow
def test_the_console_script_reads_the_default_store(history, tmp_path: Path):
    """The real `ml-server versions`, its store from MLSERVER_STORE, prints the table; an
    unknown key exits 1."""
    url, key, _ = history
    env = server_environment({"MLSERVER_STORE": url})
    done = subprocess.run(
        [*ML_SERVER, "versions", "logreg", key], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("VERSION")
    unknown = subprocess.run(
        [*ML_SERVER, "versions", "logreg", "f" * 32], capture_output=True, text=True, env=env
    )
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "has no versions" in unknown.stderr
