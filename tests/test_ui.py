"""The dashboard in process, on both backends: what each page shows, the sign-in, the CSRF
check, the scopes of actions and what they change, escaping, and the store reads behind it."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode

import falcon.testing
import pytest
import sklearn

from mlserver import Registry
from mlserver.http.auth import hash_token
from mlserver.http.live import RecentRequests
from mlserver.store import SQLStore
from mlserver.store.base import Status
from support import (
    Slow,
    answer,
    classification,
    fit_body,
    in_process,
    predict,
    put,
    registry,
    settled,
    train,
    wait_until,
)

SECRETS = {"predict": "p-secret", "train": "t-secret", "admin": "a-secret"}
TOKENS = {
    hash_token(SECRETS["predict"]): "predict",
    hash_token(SECRETS["train"]): "predict,train",
    hash_token(SECRETS["admin"]): "predict,train,admin",
    hash_token("train-only"): "train",
}


class Ui:
    """A falcon TestClient that keeps the dashboard's cookies, as a browser does."""

    def __init__(self, client: falcon.testing.TestClient) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}

    def _keep(self, result: falcon.testing.Result) -> falcon.testing.Result:
        for name, cookie in result.cookies.items():
            if cookie.value:
                self.cookies[name] = cookie.value
            else:
                self.cookies.pop(name, None)
        return result

    def get(self, path: str, **options: Any) -> falcon.testing.Result:
        return self._keep(self.client.simulate_get(path, cookies=self.cookies, **options))

    def post(self, path: str, fields: dict[str, Any], **options: Any) -> falcon.testing.Result:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **options.pop("headers", {}),
        }
        return self._keep(
            self.client.simulate_post(
                path, body=urlencode(fields), headers=headers, cookies=self.cookies, **options
            )
        )

    def csrf(self) -> str:
        if "mlserver_ui_csrf" not in self.cookies:
            self.get("/ui/login")
        return self.cookies["mlserver_ui_csrf"]

    def act(self, action: str, **fields: Any) -> falcon.testing.Result:
        """Open the confirmation page of `action`, then press its button."""
        page = self.get(f"/ui/actions/{action}", params={k: str(v) for k, v in fields.items()})
        assert page.status_code == 200, page.text
        assert 'id="confirm"' in page.text, page.text
        return self.post(f"/ui/actions/{action}", {**fields, "csrf": self.csrf()})

    def sign_in(self, token: str) -> falcon.testing.Result:
        return self.post("/ui/login", {"token": token, "csrf": self.csrf()})


def text_of(page: str) -> str:
    """The page's text, tags dropped, whitespace folded."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


@pytest.fixture
def ui(store_url):
    with in_process(registry(), store_url) as client:
        yield Ui(client)


def test_pages_show_models_keys_versions_and_jobs(ui):
    """Each page shows what the store holds: keys by status, versions with scores and
    aliases, lineage, failures in full and running jobs."""
    x, y = classification()
    key, _ = train(ui.client, "logreg", x, y, validation=0.25, name="churn")
    train(ui.client, "logreg", x, y, validation=0.25, name="churn", retrain=True)
    failed, state = train(ui.client, "failing", x, y)
    assert state["status"] == "FAILED"
    running = put(ui.client, "slow", x, y.astype(float), algkwargs={"seconds": 3})

    models = ui.get("/ui")
    assert models.status_code == 200
    assert models.headers["content-type"].startswith("text/html")
    rows = dict(
        re.findall(
            r'class="model" href="/ui/models/([^"]+)".*?<td class="num">(\d+)</td>',
            models.text,
            re.S,
        )
    )
    assert rows["logreg"] == "1" and rows["failing"] == "1" and rows["slow"] == "1"
    assert rows["linreg"] == "0"

    keys = ui.get("/ui/models/logreg")
    assert f"/ui/models/logreg/keys/{key}" in keys.text
    assert "1 keys" in text_of(keys.text)

    page = ui.get(f"/ui/models/logreg/keys/{key}")
    assert page.status_code == 200
    assert re.findall(r'id="version-(\d+)"', page.text) == ["2", "1"]  # newest first
    assert page.text.count('class="dot"') == 2  # both versions have a validation score
    scores = [round(v["metrics"]["validation"]["score"], 4) for v in _versions(ui, "logreg", key)]
    for score in scores:
        assert f"{score:.4g}" in page.text
    assert re.search(r"<td>served</td><td class=\"num\"><a [^>]+>2</a>", page.text)

    stored = _versions(ui, "logreg", key)[-1]
    times = "\N{MULTIPLICATION SIGN}"
    assert f"{stored['lineage']['rows']} {times} 3" in page.text  # rows, columns it learnt
    assert stored["lineage"]["data"][:12] in page.text
    assert f"<td>{sklearn.__version__}</td>" in page.text
    version = ui.get(f"/ui/models/logreg/keys/{key}/versions/1")
    assert stored["lineage"]["data"] in version.text
    assert stored["sha256"] in version.text
    assert "scikit-learn" in version.text

    jobs = text_of(ui.get("/ui/jobs").text)
    assert running in jobs and failed in jobs
    assert "boom: the data cannot be fitted" in jobs
    settled(ui.client, "slow", running)


def _versions(ui: Ui, model: str, key: str) -> list[dict]:
    return answer(ui.client.simulate_get(f"/{model}/{key}/versions"))["versions"]


def test_keys_page_filters_by_status_searches_and_pages(ui):
    """The key list filters by status, finds keys by a part of them, and pages by 50."""
    x, y = classification(rows=20)
    keys = sorted(put(ui.client, "failing", x, y, name=f"k{i}") for i in range(53))
    wait_until(lambda: all(settled(ui.client, "failing", k)["status"] == "FAILED" for k in keys))
    first = ui.get("/ui/models/failing")
    listed = re.findall(r'class="key" href="/ui/models/failing/keys/(\w+)"', first.text)
    assert listed == keys[:50]
    after = re.search(r'id="next" href="\?([^"]+)"', first.text).group(1).replace("&amp;", "&")
    second = ui.get(f"/ui/models/failing?{after}")
    assert re.findall(r'class="key" href="/ui/models/failing/keys/(\w+)"', second.text) == keys[50:]
    assert 'id="next"' not in second.text

    found = ui.get("/ui/models/failing", params={"q": keys[7][3:11]})
    assert re.findall(r'class="key" href="[^"]+/keys/(\w+)"', found.text) == [
        k for k in keys if keys[7][3:11] in k
    ]
    none = ui.get("/ui/models/failing", params={"status": "FINISHED"})
    assert "No keys match" in none.text
    bad = ui.get("/ui/models/failing", params={"status": "DONE"})
    assert bad.status_code == 400 and "status must be one of" in text_of(bad.text)


def test_unknown_model_key_and_version_are_404_pages(ui):
    """A page of something that is not there answers 404 with the reason, as HTML."""
    for path, says in [
        ("/ui/models/nope", "unknown model"),
        ("/ui/models/logreg/keys/abc", "has no versions"),
        ("/ui/actions/explode?model=logreg&key=abc", "no action 'explode'"),
    ]:
        page = ui.get(path)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert says in text_of(page.text).lower()


def test_actions_roll_back_refit_delete_and_cancel(ui):
    """Each action asks first, then does what its API route does: the prediction follows
    the moved alias, a refit trains, a version and a key are deleted, a job is cancelled."""
    x, y = classification()
    key, _ = train(ui.client, "logreg", x, y, name="k", modkwargs={"C": 1e-4})
    train(ui.client, "logreg", x, y, name="k", modkwargs={"C": 1e-4}, retrain=True)
    assert answer(predict(ui.client, "logreg", key, x.head(2)))["version"] == 2

    done = ui.act("alias", model="logreg", key=key, version=1, alias="served")
    assert done.status_code == 200
    assert "Alias 'served' now points at version 1." in text_of(done.text)
    assert answer(predict(ui.client, "logreg", key, x.head(2)))["version"] == 1

    done = ui.act("refit", model="logreg", key=key, version=2)
    assert "Refit started: version 3 is RUNNING." in text_of(done.text)
    assert settled(ui.client, "logreg", key)["status"] == "FINISHED"

    done = ui.act("delete-version", model="logreg", key=key, version=2)
    assert "Version 2 was deleted." in text_of(done.text)
    assert [v["version"] for v in _versions(ui, "logreg", key)] == [3, 1]

    refused = ui.act("delete-version", model="logreg", key=key, version=3)  # the refit serves
    assert refused.status_code == 409 and "aliased as served" in text_of(refused.text)

    running = put(ui.client, "slow", x, y.astype(float), algkwargs={"seconds": 2})
    done = ui.act("cancel", model="slow", key=running, version=1)
    assert "Version 1 was cancelled" in text_of(done.text)
    after = answer(ui.client.simulate_get("/slow", params={"model-key": running}))
    assert (after["status"], after["error"]) == ("FAILED", "cancelled")
    not_running = ui.act("cancel", model="logreg", key=key, version=1)
    assert not_running.status_code == 409 and "only a RUNNING job" in text_of(not_running.text)

    done = ui.act("delete-key", model="logreg", key=key)
    assert "Deleted 2 versions of the key." in text_of(done.text)
    assert ui.client.simulate_get("/logreg", params={"model-key": key}).status_code == 404


def test_a_form_without_its_csrf_token_changes_nothing(ui):
    """A POST without the cookie's CSRF token, with another, or from another site is a 403
    and moves nothing."""
    x, y = classification()
    key, _ = train(ui.client, "logreg", x, y, name="k")
    train(ui.client, "logreg", x, y, name="k", retrain=True)
    fields = {"model": "logreg", "key": key, "version": 1, "alias": "served"}
    ui.csrf()
    for extra, headers in [
        ({}, {}),
        ({"csrf": "0" * 32}, {}),
        ({"csrf": ui.csrf()}, {"Origin": "http://evil.example"}),
    ]:
        refused = ui.post("/ui/actions/alias", {**fields, **extra}, headers=headers)
        assert refused.status_code == 403, refused.text
    stranger = Ui(ui.client)  # no cookie: what a cross-site form sends under SameSite=Strict
    assert stranger.post("/ui/actions/alias", {**fields, "csrf": ui.csrf()}).status_code == 403
    wrong_type = ui.client.simulate_post(
        "/ui/actions/alias", json={**fields, "csrf": ui.csrf()}, cookies=ui.cookies
    )
    assert wrong_type.status_code == 415
    assert answer(ui.client.simulate_get(f"/logreg/{key}/aliases"))["aliases"] == {"served": 2}


def test_user_data_is_escaped_everywhere(ui):
    """Errors, column names, metadata and aliases holding markup are shown as text."""
    x, y = classification()
    markup = "<script>alert(1)</script>"
    bad = x.rename(columns={x.columns[0]: markup})
    key, state = train(ui.client, "failing", bad, y)
    assert state["status"] == "FAILED"
    logreg, _ = train(ui.client, "logreg", bad, y)
    pages = [
        ui.get("/ui/jobs"),
        ui.get(f"/ui/models/failing/keys/{key}"),
        ui.get(f"/ui/models/failing/keys/{key}/versions/1"),
        ui.get(f"/ui/models/logreg/keys/{logreg}/versions/1"),
    ]
    for page in pages:
        assert page.status_code == 200
        assert "<script" not in page.text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[3].text  # a feature name
    assert (
        "&lt;script&gt;"
        in ui.get(
            "/ui/actions/alias", params={"model": "logreg", "key": logreg, "alias": markup}
        ).text
    )


def test_every_answer_carries_a_strict_content_security_policy(ui):
    """Pages, errors, the stylesheet and redirects all forbid scripts and framing."""
    for path in ("/ui", "/ui/jobs", "/ui/live", "/ui/models/nope", "/ui/static/ui.css"):
        headers = ui.get(path).headers
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert "frame-ancestors 'none'" in policy
        assert headers["x-content-type-options"] == "nosniff"
    css = ui.get("/ui/static/ui.css")
    assert css.headers["content-type"].startswith("text/css") and b".status" in css.content


def test_live_page_reports_rates_latencies_and_errors(ui):
    """Predicts and refusals of a model show up in its row of the live page, which
    refreshes itself."""
    x, y = classification()
    key, _ = train(ui.client, "logreg", x, y)
    for _ in range(9):
        assert predict(ui.client, "logreg", key, x.head(1)).status_code == 200
    assert predict(ui.client, "logreg", "0" * 32, x.head(1)).status_code == 404
    page = ui.get("/ui/live")
    assert '<meta http-equiv="refresh" content="5">' in page.text
    row = re.search(r'href="/ui/models/logreg">logreg</a></td>(.*?)</tr>', page.text, re.S)
    cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row.group(1))
    requests, _, p50, p99, client, server = cells
    assert int(requests) >= 11  # the PUT, its status polls, 9 predicts and the 404
    assert p50.endswith("ms") and p99.endswith(("ms", " s"))
    assert client != "0.0 %" and server == "0.0 %"
    assert "/ui" not in text_of(page.text).split("Requests over time")[1]  # pages not counted


def test_ui_false_serves_no_dashboard(sqlite_url):
    """`create_app(..., ui=False)` leaves /ui unrouted: a 404 like any unknown model."""
    with in_process(registry(), sqlite_url, ui=False) as client:
        assert client.simulate_get("/ui").status_code == 404
        assert client.simulate_get("/ui/jobs").status_code == 404


def test_with_auth_nothing_shows_without_a_token(store_url):
    """With tokens, every page answers the login form (401) until a predict token is
    entered; the token then lives in an HttpOnly SameSite=Strict cookie scoped to /ui."""
    with in_process(registry(), store_url, tokens=TOKENS) as client:
        x, y = classification()
        auth = {"Authorization": f"Bearer {SECRETS['train']}"}
        key = _put(client, x, y, auth, name="secret-name")
        ui = Ui(client)
        first = ui.get("/ui")  # the sign-in form's CSRF token is the cookie it sets
        given = re.search(r'name="csrf" value="(\w+)"', first.text).group(1)
        assert given == ui.cookies["mlserver_ui_csrf"]
        assert first.headers["set-cookie"].count("mlserver_ui_csrf=") == 1
        for path in ("/ui", "/ui/jobs", "/ui/live", f"/ui/models/logreg/keys/{key}"):
            page = ui.get(path)
            assert page.status_code == 401
            assert 'name="token"' in page.text and key not in page.text

        wrong = ui.sign_in("wrong")
        assert wrong.status_code == 401 and "not valid" in text_of(wrong.text)
        lacking = ui.sign_in("train-only")  # valid, without the scope: 403, as the API says
        assert lacking.status_code == 403 and "lacks the 'predict' scope" in text_of(lacking.text)
        assert "mlserver_ui_token" not in ui.cookies
        scoped = client.simulate_get("/ui", headers={"Authorization": "Bearer train-only"})
        assert scoped.status_code == 403 and 'name="token"' in scoped.text

        signed = ui.sign_in(SECRETS["predict"])
        assert signed.status_code == 303 and signed.headers["location"].endswith("/ui")
        cookie = signed.cookies["mlserver_ui_token"]
        assert (cookie.path, cookie.http_only, cookie.same_site) == ("/ui", True, "Strict")
        assert ui.get(f"/ui/models/logreg/keys/{key}").status_code == 200

        # A bearer header works too (scripts); a wrong one is the login form again.
        header = client.simulate_get("/ui", headers={"Authorization": f"Bearer {SECRETS['admin']}"})
        assert header.status_code == 200
        assert client.simulate_get("/ui", headers={"Authorization": "Bearer no"}).status_code == 401

        out = ui.post("/ui/logout", {"csrf": ui.csrf()})
        assert out.status_code == 303 and "mlserver_ui_token" not in ui.cookies
        assert ui.get("/ui").status_code == 401


def test_with_auth_actions_need_the_scope_of_their_route(store_url):
    """A predict token sees no action links and is refused (403) when it posts one; a train
    token moves an alias but cannot delete a key, which needs admin."""
    with in_process(registry(), store_url, tokens=TOKENS) as client:
        x, y = classification()
        auth = {"Authorization": f"Bearer {SECRETS['train']}"}
        key = _put(client, x, y, auth, name="k")
        wait_until(lambda: _versions_with(client, key, auth)[0]["status"] == "FINISHED")
        _put(client, x, y, auth, name="k", retrain=True)
        wait_until(
            lambda: (
                [v["status"] for v in _versions_with(client, key, auth)] == ["FINISHED", "FINISHED"]
            )
        )
        fields = {"model": "logreg", "key": key, "version": 1, "alias": "served"}

        reader = Ui(client)
        reader.sign_in(SECRETS["predict"])
        page = reader.get(f"/ui/models/logreg/keys/{key}")
        assert "/ui/actions/" not in page.text
        confirm = reader.get("/ui/actions/alias", params={k: str(v) for k, v in fields.items()})
        assert confirm.status_code == 403 and 'id="confirm"' not in confirm.text
        assert "needs a token with the train scope" in text_of(confirm.text)
        refused = reader.post("/ui/actions/alias", {**fields, "csrf": reader.csrf()})
        assert refused.status_code == 403

        trainer = Ui(client)
        trainer.sign_in(SECRETS["train"])
        assert 'id="delete-key"' not in trainer.get(f"/ui/models/logreg/keys/{key}").text
        assert trainer.act("alias", **fields).status_code == 200
        assert client.simulate_get(f"/logreg/{key}/aliases", headers=auth).json["aliases"] == {
            "served": 1
        }
        denied = trainer.post(
            "/ui/actions/delete-key", {"model": "logreg", "key": key, "csrf": trainer.csrf()}
        )
        assert denied.status_code == 403 and "'admin' scope" in text_of(denied.text)

        admin = Ui(client)
        admin.sign_in(SECRETS["admin"])
        assert admin.act("delete-key", model="logreg", key=key).status_code == 200
        assert _versions_with(client, key, auth) == []


def _put(client: falcon.testing.TestClient, x, y, headers: dict, **params: Any) -> str:
    found = client.simulate_put("/logreg", json=fit_body(x, y, **params), headers=headers)
    assert found.status_code == 202, found.text
    return found.json["model-key"]


def _versions_with(client: falcon.testing.TestClient, key: str, headers: dict) -> list[dict]:
    found = client.simulate_get(f"/logreg/{key}/versions", headers=headers)
    return found.json["versions"] if found.status_code == 200 else []


def test_store_counts_keys_by_newest_status_and_lists_recent_jobs(store_url):
    """key_counts counts each key once, by its newest version; recent lists by status,
    newest first, only the models asked for; keys(contains=) finds substrings."""
    store = SQLStore(store_url)
    try:
        for key, outcomes in {
            "a1": ["FINISHED", "FAILED"],
            "b2": ["FAILED", "FINISHED"],
            "c3": ["FINISHED"],
            "d4": ["RUNNING"],
        }.items():
            for outcome in outcomes:
                claim = store.claim("m", key, worker="w", lease_seconds=30, retrain=True)
                if outcome == "FAILED":
                    store.fail(claim.version.id, f"broke {key}")
                elif outcome == "FINISHED":
                    from mlserver.store.base import Artifact

                    store.finish(claim.version.id, Artifact(b"x", _sha(b"x"), "joblib", {}))
        store.claim("other", "z", worker="w", lease_seconds=30, retrain=True)
        assert store.key_counts() == {
            "m": {"FAILED": 1, "FINISHED": 2, "RUNNING": 1},
            "other": {"RUNNING": 1},
        }
        assert store.key_counts("other") == {"other": {"RUNNING": 1}}
        failed = store.recent(Status.FAILED, models=["m"])
        assert [(v.key, v.version, v.error) for v in failed] == [
            ("b2", 1, "broke b2"),
            ("a1", 2, "broke a1"),
        ]
        assert [v.key for v in store.recent(Status.RUNNING)] == ["z", "d4"]
        assert [v.key for v in store.recent(Status.RUNNING, models=["m"], limit=1)] == ["d4"]
        assert [v.key for v in store.keys("m", contains="2").items] == ["b2"]
        assert [v.key for v in store.keys("m", contains="%").items] == []  # no wildcards
        assert [v.key for v in store.keys("m", contains="", status=Status.FINISHED).items] == [
            "b2",
            "c3",
        ]
    finally:
        store.close()


def _sha(blob: bytes) -> str:
    import hashlib

    return hashlib.sha256(blob).hexdigest()


def test_recent_requests_keeps_a_window_of_rates_percentiles_and_errors():
    """Percentiles come within 5 % of the true ones, errors are counted by class, and
    slots older than the window are dropped."""
    now = [1000.0]
    recent = RecentRequests(window=60, slot=10, clock=lambda: now[0])
    latencies = [0.001 * (i + 1) for i in range(100)]  # 1 ms .. 100 ms
    for i, seconds in enumerate(latencies):
        recent.record("a", 500 if i == 0 else 404 if i < 5 else 200, seconds)
    now[0] += 10
    row = recent.summary()[0]
    assert row.model == "a" and row.requests == 100
    assert row.p50 == pytest.approx(0.050, rel=0.05) and row.p50 >= 0.050
    assert row.p99 == pytest.approx(0.099, rel=0.05) and row.p99 >= 0.099
    assert (row.server_error_rate, row.client_error_rate) == (0.01, 0.04)
    assert row.per_second == pytest.approx(100 / 10)
    assert sum(row.series) == 100 and len(row.series) == 6 and row.series[-2] == 100
    now[0] += 60
    recent.record("b", 200, 0.002)
    assert [r.model for r in recent.summary()] == ["b"]  # a's slot left the window


def test_registry_reserves_ui():
    """No model can take the dashboard's route."""
    with pytest.raises(Exception, match="reserved"):
        Registry([type("Ui", (Slow,), {"name": "ui"})])
