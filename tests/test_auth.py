"""Bearer-token auth: which scope each route needs, 401/403 answers, token files, the CLI."""

from __future__ import annotations

import jsonschema
import pytest
import requests
from openapi_spec_validator import validate

from mlserver import create_app
from mlserver.cli import main
from mlserver.errors import ConfigurationError
from mlserver.http.auth import Tokens, hash_token, load_token_file, parse_tokens
from mlserver.store import SQLStore
from support import (
    ServerProcess,
    fit_body,
    in_process,
    predict_body,
    registry,
    regression,
    wait_until,
)

SECRETS = {"predict": "tok-predict-1", "train": "tok-train-2", "admin": "tok-admin-3"}
TOKENS = {hash_token(token): [scope] for scope, token in SECRETS.items()}
ANY = frozenset(SECRETS)  # any valid token will do
OPEN = None


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One app with a token per scope; the matrix's requests change no stored state."""
    url = f"sqlite:///{tmp_path_factory.mktemp('auth') / 'models.db'}"
    with in_process(registry(), url, tokens=TOKENS) as client:
        yield client


@pytest.fixture
def open_client(sqlite_url):
    """An app without tokens."""
    with in_process(registry(), sqlite_url) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# name: (method, path, request kwargs, scopes that admit it, status once admitted).
# Each request is one the server refuses or answers without storing anything.
REQUESTS = {
    "predict": (
        "POST",
        "/linreg",
        {"json": {"x": {"a": {"0": 1}}, "model-key": "k"}},
        {"predict"},
        404,
    ),
    "status": ("GET", "/linreg", {"params": {"model-key": "k"}}, {"predict", "train"}, 404),
    "fit": ("PUT", "/linreg", {"json": {"x": "{bad"}}, {"train"}, 400),
    "update": ("PATCH", "/sgd", {"json": {"x": {"a": {"0": 1}}, "model-key": "k"}}, {"train"}, 404),
    "delete": ("DELETE", "/linreg", {"params": {"model-key": "k"}}, {"admin"}, 404),
    "key list": ("GET", "/linreg", {}, {"admin"}, 200),
    "models": ("GET", "/models", {}, {"admin"}, 200),
    "openapi": ("GET", "/openapi.json", {}, {"admin"}, 200),
    "metrics": ("GET", "/metrics", {}, {"admin"}, 200),
    "health": ("GET", "/health", {}, OPEN, 200),
    "ready": ("GET", "/ready", {}, OPEN, 200),
    "options": ("OPTIONS", "/linreg", {}, ANY, 204),
    "unknown model": ("PUT", "/nope", {"json": {}}, {"train"}, 404),
}
# name: (headers, the scope of the valid token they carry, if any).
CREDENTIALS = {
    "no token": ({}, None),
    "wrong token": (bearer("not-a-token"), None),
    "basic auth": ({"Authorization": "Basic dXNlcjpwYXNz"}, None),
    **{f"{scope} token": (bearer(token), scope) for scope, token in SECRETS.items()},
}


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("request_name", REQUESTS)
def test_each_request_needs_its_scope(client, request_name, credentials):
    """Open routes answer anyone; others are 401 without a valid token, 403 without the scope."""
    method, path, kwargs, scopes, admitted = REQUESTS[request_name]
    headers, scope = CREDENTIALS[credentials]
    response = client.simulate_request(method, path, headers=headers, **kwargs)
    if scopes is OPEN or scope in scopes:
        assert response.status_code == admitted, response.text
        return
    expected = 401 if scope is None else 403
    assert response.status_code == expected, response.text
    assert set(response.json) == {"title", "description"}
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    if expected == 403:
        assert "insufficient_scope" in challenge
        assert all(repr(name) in response.json["description"] for name in scopes)


def test_without_tokens_every_route_is_open(open_client):
    """With no tokens configured, nothing asks for one (as before auth existed)."""
    for path in ("/models", "/openapi.json", "/metrics", "/linreg"):
        assert open_client.simulate_get(path).status_code == 200
    spec = open_client.simulate_get("/openapi.json").json
    assert "securitySchemes" not in spec["components"] and "security" not in spec


def test_scoped_tokens_run_a_whole_session(sqlite_url):
    """A trainer fits and polls, a predictor predicts, an admin lists and deletes; each is
    refused what its scope does not cover."""
    with in_process(registry(), sqlite_url, tokens=TOKENS) as client:
        x, y = regression()
        fit = fit_body(x, y)
        started = client.simulate_put("/linreg", json=fit, headers=bearer(SECRETS["train"]))
        assert started.status_code == 202
        key = started.json["model-key"]
        status = {"params": {"model-key": key}, "headers": bearer(SECRETS["train"])}
        wait_until(lambda: client.simulate_get("/linreg", **status).json["status"] == "FINISHED")
        body = predict_body(key, x.head(3))
        refused = client.simulate_post("/linreg", json=body, headers=bearer(SECRETS["train"]))
        assert refused.status_code == 403
        answer = client.simulate_post("/linreg", json=body, headers=bearer(SECRETS["predict"]))
        assert answer.status_code == 200 and answer.json["version"] == 1
        assert (
            client.simulate_put("/linreg", json=fit, headers=bearer(SECRETS["predict"])).status_code
            == 403
        )
        listing = client.simulate_get("/linreg", headers=bearer(SECRETS["admin"]))
        assert [k["model-key"] for k in listing.json["keys"]] == [key]
        deleted = client.simulate_delete(
            "/linreg", params={"model-key": key}, headers=bearer(SECRETS["admin"])
        )
        assert deleted.json == {"model-key": key, "deleted": 1}


def test_scheme_is_case_insensitive_and_a_token_may_hold_several_scopes(sqlite_url):
    """`bearer` in any case works; one token with two scopes passes both kinds of check."""
    both = "tok-both-4"
    with in_process(registry(), sqlite_url, tokens={hash_token(both): "predict,admin"}) as client:
        headers = {"Authorization": f"bEaReR {both}"}
        assert client.simulate_get("/models", headers=headers).status_code == 200
        assert (
            client.simulate_get("/linreg", params={"model-key": "k"}, headers=headers).status_code
            == 404
        )
        assert client.simulate_put("/linreg", json={}, headers=headers).status_code == 403
        assert (
            client.simulate_get("/models", headers={"Authorization": "Bearer "}).status_code == 401
        )


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ({"plain-token": "predict"}, "not a sha256 hex digest"),
        ({hash_token("t"): "predict,root"}, "each must be one of predict, train, admin"),
        ({hash_token("t"): ""}, "has scopes none"),
        ({}, "no tokens given"),
    ],
)
def test_bad_token_tables_are_configuration_errors(sqlite_url, entries, needle):
    """A plain token, an unknown or missing scope, or no token at all is refused at start."""
    with pytest.raises(ConfigurationError, match=needle) as raised:
        create_app(registry(), SQLStore(sqlite_url), tokens=entries)
    assert "plain-token" not in str(raised.value)


def test_tokens_match_only_their_own_hash():
    """A token is known by its sha256 alone: the hash itself, or a case change, is no token."""
    tokens = Tokens({hash_token("secret-a").upper(): ["train"], hash_token("secret-b"): "admin"})
    assert tokens.scopes_of("secret-a") == {"train"}
    assert tokens.scopes_of("secret-b") == {"admin"}
    assert tokens.scopes_of(hash_token("secret-a")) is None
    assert tokens.scopes_of("Secret-a") is None
    assert len(tokens) == 2


def test_token_file_format(tmp_path):
    """Lines `<sha256> <scopes>` with comments and blanks parse; a bad line is named, not shown."""
    path = tmp_path / "tokens"
    path.write_text(
        f"# ci and dashboards\n\n{hash_token('a')} predict,train\n  {hash_token('b')}   admin\n"
    )
    assert load_token_file(path) == {
        hash_token("a"): {"predict", "train"},
        hash_token("b"): {"admin"},
    }
    assert parse_tokens(f"{hash_token('a')} predict; {hash_token('b')} train") == {
        hash_token("a"): {"predict"},
        hash_token("b"): {"train"},
    }
    with pytest.raises(ConfigurationError, match="token entry 2 must be") as raised:
        parse_tokens(f"{hash_token('a')} predict\nsecret-token-here predict extra")
    assert "secret-token-here" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="repeats"):
        parse_tokens(f"{hash_token('a')} predict\n{hash_token('a')} admin")
    with pytest.raises(ConfigurationError, match="cannot read token file"):
        load_token_file(tmp_path / "missing")


def test_openapi_documents_the_scheme_and_scopes(client):
    """With auth on, the document is valid 3.1, names each operation's scopes, documents the
    401/403 answers the server gives, and leaves /health and /ready open."""
    spec = client.simulate_get("/openapi.json", headers=bearer(SECRETS["admin"])).json
    validate(spec)
    assert spec["components"]["securitySchemes"]["bearer"] == {
        **spec["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    paths = spec["paths"]
    assert paths["/health"]["get"]["security"] == [] and paths["/ready"]["get"]["security"] == []
    assert paths["/linreg"]["post"]["security"] == [{"bearer": ["predict"]}]
    assert paths["/linreg"]["put"]["security"] == [{"bearer": ["train"]}]
    assert paths["/sgd"]["patch"]["security"] == [{"bearer": ["train"]}]
    assert paths["/linreg"]["delete"]["security"] == [{"bearer": ["admin"]}]
    assert {s["bearer"][0] for s in paths["/linreg"]["get"]["security"]} == set(SECRETS)
    assert paths["/metrics"]["get"]["security"] == [{"bearer": ["admin"]}]
    for status, headers in ((401, {}), (403, bearer(SECRETS["predict"]))):
        response = client.simulate_put("/linreg", json={}, headers=headers)
        assert response.status_code == status
        documented = paths["/linreg"]["put"]["responses"][str(status)]
        schema = documented["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(
            response.json
        )
        for header in documented.get("headers", {}):
            assert header.lower() in response.headers


def test_cli_bad_token_sources_are_one_line(tmp_path, monkeypatch, capsys):
    """A token file that cannot be read, by flag or variable, exits 2 saying which."""
    missing = tmp_path / "missing"
    monkeypatch.setenv("MLSERVER_TOKEN_FILE", str(missing))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlserver: error: MLSERVER_TOKEN_FILE: cannot read token file")
    assert err.count("\n") == 1
    monkeypatch.delenv("MLSERVER_TOKEN_FILE")
    (tmp_path / "bad").write_text("not-a-hash predict\n")
    assert main(["serve", "--token-file", str(tmp_path / "bad")]) == 2
    assert "not a sha256 hex digest" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_token_file_flag_wins_over_the_environment(tmp_path):
    """`ml-server serve --token-file` turns auth on; its file wins over MLSERVER_TOKEN_FILE's,
    and MLSERVER_TOKENS adds tokens of its own."""
    flag_file, env_file = tmp_path / "flag-tokens", tmp_path / "env-tokens"
    flag_file.write_text(f"{hash_token('from-flag')} admin\n")
    env_file.write_text(f"{hash_token('from-env')} admin\n")
    env = {"MLSERVER_TOKEN_FILE": str(env_file), "MLSERVER_TOKENS": f"{hash_token('extra')} admin"}
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'models.db'}", "--token-file", str(flag_file), env=env
    )
    try:
        url = server.url

        def status(token: str | None, path: str = "/models") -> int:
            headers = bearer(token) if token else {}
            return requests.get(url + path, headers=headers, timeout=10).status_code

        assert status(None, "/health") == 200
        assert status(None) == 401
        assert status("from-flag") == 200 and status("extra") == 200
        assert status("from-env") == 401
    finally:
        server.stop()
