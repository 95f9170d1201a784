"""The dashboard in a real browser: headless Chromium, driven by Selenium, against
`ml-server serve` on SQLite and PostgreSQL, with and without auth. It clicks through models,
a key and a version, rolls an alias back and sees the prediction change over HTTP, cancels a
job, and finds markup from the store shown as text."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mlserver.http.auth import hash_token
from support import ServerProcess, classification, fit_body, predict_body, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: CI installs Chromium; there a missing browser fails the run instead of skipping it.
REQUIRE_BROWSER = os.environ.get("MLSERVER_REQUIRE_BROWSER") == "1"
TOKEN = "browser-admin-token"
ROOT = Path(__file__).parent.parent


def _require_chromium() -> None:
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    reason = (
        f"headless Chromium needs {CHROMIUM} and {CHROMEDRIVER} "
        "(apt-get install chromium chromium-driver)"
    )
    if REQUIRE_BROWSER:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver() -> Iterator:
    """One headless Chromium for the module; each test starts without cookies."""
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.implicitly_wait(5)
    yield browser
    browser.quit()


@pytest.fixture(params=[False, True], ids=["open", "auth"])
def server(request, store_url) -> Iterator[tuple[ServerProcess, dict]]:
    """`ml-server serve` of the test registry; with auth, one admin token; the headers an
    API call needs."""
    options: tuple[str, ...] = ()
    headers: dict = {}
    if request.param:
        options = ("--tokens", f"{hash_token(TOKEN)} predict,train,admin")
        headers = {"Authorization": f"Bearer {TOKEN}"}
    process = ServerProcess(store_url, *options)
    yield process, headers
    process.stop()


def _call(verb: str, url: str, headers: dict, **options) -> dict:
    answer = requests.request(verb, url, headers=headers, timeout=30, **options)
    assert answer.status_code < 300, (answer.status_code, answer.text)
    return answer.json()


def _train(base: str, headers: dict, model: str, body: dict) -> str:
    key = _call("PUT", f"{base}/{model}", headers, json=body)["model-key"]
    wait_until(
        lambda: (
            _call("GET", f"{base}/{model}", headers, params={"model-key": key})["status"]
            != "RUNNING"
        )
    )
    return key


def _click(driver, element) -> None:
    """Click a link or button and wait until the page it leads to has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait = WebDriverWait(driver, 20)
    wait.until(expected_conditions.staleness_of(page))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def _open(driver, base: str, path: str, signed: bool) -> None:
    """Open a page, signing in first when the server asks for a token."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}{path}")
    if signed and driver.title.startswith("Sign in"):  # get() has waited for the page
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        _click(driver, driver.find_element(By.ID, "sign-in"))
        assert not driver.title.startswith("Sign in"), driver.page_source
        driver.get(f"{base}{path}")


def test_click_through_roll_back_and_see_the_prediction_change(driver, server):
    """Models -> key -> version, then 'Serve this version' and its confirmation: the next
    predict over HTTP answers with the version the browser rolled back to."""
    from selenium.webdriver.common.by import By

    process, headers = server
    base = process.url
    driver.delete_all_cookies()
    x, y = classification()
    key = _train(base, headers, "logreg", fit_body(x, y, name="rollback"))
    _train(base, headers, "logreg", fit_body(x, 1 - y, name="rollback", retrain=True))
    ask = predict_body(key, x.head(20))
    newest = _call("POST", f"{base}/logreg", headers, json=ask)
    assert newest["version"] == 2

    if headers:  # nothing but the sign-in form without a token
        driver.get(f"{base}/ui")
        assert driver.find_elements(By.ID, "token") and "logreg" not in driver.page_source
    _open(driver, base, "/ui", bool(headers))
    _click(driver, driver.find_element(By.LINK_TEXT, "logreg"))
    _click(driver, driver.find_element(By.LINK_TEXT, key))
    assert driver.find_element(By.CSS_SELECTOR, "h1").text == key
    _click(driver, driver.find_element(By.CSS_SELECTOR, "#version-1 a.version"))
    assert driver.find_element(By.CSS_SELECTOR, "h1").text.startswith("Version 1")
    _click(driver, driver.find_element(By.CSS_SELECTOR, "a.serve"))
    assert "Point alias 'served' at version 1?" in driver.find_element(By.ID, "question").text
    _click(driver, driver.find_element(By.ID, "confirm"))
    assert driver.find_element(By.ID, "result").text == "Alias 'served' now points at version 1."

    rolled = _call("POST", f"{base}/logreg", headers, json=ask)
    assert rolled["version"] == 1
    assert rolled["y"] != newest["y"]  # version 2 learnt the flipped labels
    _click(driver, driver.find_element(By.ID, "back"))
    assert driver.find_element(By.CSS_SELECTOR, "#aliases").text.split()[-2:] == ["served", "1"]


def test_cancel_a_running_job_from_the_jobs_page(driver, server):
    """The jobs page lists a RUNNING version; Cancel and its confirmation make it FAILED
    (cancelled), as DELETE of the version does."""
    from selenium.webdriver.common.by import By

    process, headers = server
    base = process.url
    driver.delete_all_cookies()
    x, y = classification()
    body = fit_body(x, y.astype(float), algkwargs={"seconds": 60})
    key = _call("PUT", f"{base}/slow", headers, json=body)["model-key"]
    _open(driver, base, "/ui/jobs", bool(headers))
    running = driver.find_element(By.ID, "running")
    assert key in running.text
    _click(driver, running.find_element(By.CSS_SELECTOR, "a.cancel"))
    _click(driver, driver.find_element(By.ID, "confirm"))
    assert "Version 1 was cancelled" in driver.find_element(By.ID, "result").text
    state = _call("GET", f"{base}/slow", headers, params={"model-key": key})
    assert (state["status"], state["error"]) == ("FAILED", "cancelled")
    driver.get(f"{base}/ui/jobs")
    assert key not in driver.find_element(By.ID, "running").text
    assert key in driver.find_element(By.ID, "failed").text


def test_markup_from_the_store_is_shown_as_text(driver, server):
    """A column named like a script is shown on the version page as text and never runs."""
    from selenium.webdriver.common.by import By

    process, headers = server
    base = process.url
    driver.delete_all_cookies()
    markup = "<script>window.pwned = 1</script><img src=x onerror='window.pwned=2'>"
    x, y = classification()
    x = x.rename(columns={x.columns[0]: markup})
    key = _train(base, headers, "logreg", fit_body(x, y))
    _open(driver, base, f"/ui/models/logreg/keys/{key}/versions/1", bool(headers))
    assert markup in driver.find_element(By.ID, "metadata").text
    assert driver.execute_script("return window.pwned === undefined")
    markup_elements = "return document.querySelectorAll('main script, main img').length"
    assert driver.execute_script(markup_elements) == 0


def test_screenshot_script_saves_a_png_of_every_page(tmp_path):
    """`examples/dashboard.py --screenshots DIR` (what made docs/images) writes a PNG of each
    page, taken by Chromium."""
    _require_chromium()
    done = subprocess.run(
        [sys.executable, "examples/dashboard.py", "--screenshots", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    names = ("models", "keys", "key", "version", "jobs", "live", "confirm")
    for name in names:
        png = tmp_path / f"ui-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000  # a page, not a blank
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"ui-{n}.png" for n in names)
