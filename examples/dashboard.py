"""The dashboard at /ui: a server with a few keys, versions, a failure and a running job.

    python examples/dashboard.py                   # fills a server, checks each page, exits
    python examples/dashboard.py --serve           # ... and keeps serving: open the URL it prints
    python examples/dashboard.py --screenshots docs/images   # a PNG of each page (Chromium)

Screenshots need headless Chromium and its driver (Debian: `apt-get install chromium
chromium-driver`) and the `selenium` package.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _http import call, serve_in_background, wait_finished
from sklearn.linear_model import LogisticRegression, SGDRegressor

from mlserver import ModelWrapper, Registry, create_app, wrap_estimator
from mlserver.store import SQLStore

#: The pages, by the file name of their screenshot.
PAGES = ("models", "keys", "key", "version", "jobs", "live", "confirm")


class Forecast(ModelWrapper):
    """A demand forecast whose fit waits until it is told to finish: a job to watch."""

    name = "forecast"

    def __init__(self) -> None:
        self.release = threading.Event()

    def make_model(self, **modkwargs: Any) -> SGDRegressor:
        return SGDRegressor(**modkwargs)

    def fit(self, model: Any, x: Any, y: Any = None, **algkwargs: Any) -> Any:
        self.release.wait(600)
        return model.fit(x, y, **algkwargs)


def churn(rows: int, seed: int, noise: float) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["tenure", "spend", "calls"])
    signal = x["calls"] - x["tenure"] + rng.normal(scale=noise, size=rows)
    return x, pd.Series((signal > 0).astype(int), name="churned")


def split(frame: pd.DataFrame | pd.Series) -> str:
    return frame.to_json(orient="split")


def fill(base: str) -> dict[str, str]:
    """Keys with versions of rising scores, a rollback, a failure and a running job."""
    churn_url = f"{base}/churn"
    key = None
    for number, noise in enumerate((2.0, 1.0, 0.5, 0.1)):
        x, y = churn(300, seed=number, noise=noise)
        body = {"x": split(x), "y": split(y), "orient": "split", "name": "churn-eu"}
        body.update(validation=0.25, retrain=True)
        key = call("PUT", churn_url, body)["model-key"]
        wait_finished(churn_url, key)
    assert key is not None
    # The newest version serves; roll back to version 3, as an operator would.
    call("PUT", f"{churn_url}/{key}/aliases/served", {"version": 3})
    call("PUT", f"{churn_url}/{key}/aliases/champion", {"version": 4})
    for region in ("us", "apac", "latam"):
        x, y = churn(120, seed=len(region), noise=0.5)
        body = {"x": split(x), "y": split(y), "orient": "split", "name": f"churn-{region}"}
        wait_finished(churn_url, call("PUT", churn_url, body)["model-key"])
    # A fit that fails: y has one class only.
    x, y = churn(50, seed=9, noise=0.1)
    failing = {"x": split(x), "y": split(y * 0), "orient": "split", "name": "churn-test"}
    failed = call("PUT", churn_url, failing)["model-key"]
    while call("GET", churn_url, **{"model-key": failed})["status"] == "RUNNING":
        time.sleep(0.05)
    # Predictions, for the live page.
    for _ in range(40):
        call("POST", churn_url, {"model-key": key, "x": split(x.head(3)), "orient": "split"})
    x, y = churn(200, seed=11, noise=0.5)
    body = {"x": split(x), "y": split(y.astype(float)), "orient": "split", "name": "demand"}
    running = call("PUT", f"{base}/forecast", body)["model-key"]
    return {"key": key, "running": running}


def urls(base: str, keys: dict[str, str]) -> dict[str, str]:
    key = keys["key"]
    return {
        "models": f"{base}/ui",
        "keys": f"{base}/ui/models/churn",
        "key": f"{base}/ui/models/churn/keys/{key}",
        "version": f"{base}/ui/models/churn/keys/{key}/versions/4",
        "jobs": f"{base}/ui/jobs",
        "live": f"{base}/ui/live",
        "confirm": f"{base}/ui/actions/alias?model=churn&key={key}&version=4&alias=served",
    }


def screenshots(pages: dict[str, str], out: Path) -> list[Path]:
    """A full-page PNG of each page, taken by headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    out.mkdir(parents=True, exist_ok=True)
    taken = []
    try:
        for name, url in pages.items():
            _viewport(driver, 1280, 400)  # measured at its least, then shown whole
            driver.get(url)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            _viewport(driver, 1280, min(height, 2400))
            path = out / f"ui-{name}.png"
            driver.save_screenshot(str(path))
            taken.append(path)
    finally:
        driver.quit()
    return taken


def _viewport(driver: Any, width: int, height: int) -> None:
    """The page's own size in CSS pixels, whatever the window around it."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep serving until Ctrl-C")
    parser.add_argument("--screenshots", type=Path, metavar="DIR", help="save a PNG per page")
    args = parser.parse_args()

    forecast = Forecast()
    registry = Registry([wrap_estimator(LogisticRegression, "churn"), forecast])
    store = SQLStore(f"sqlite:///{tempfile.mkdtemp(prefix='mlserver-dashboard-')}/models.db")
    base, stop = serve_in_background(create_app(registry, store))
    try:
        pages = urls(base, fill(base))
        for name, url in pages.items():
            with urllib.request.urlopen(url, timeout=30) as answer:
                size = len(answer.read())
            print(f"{name:<8} {answer.status} {size:>6} bytes  {url}")
        if args.screenshots:
            for path in screenshots(pages, args.screenshots):
                print(f"saved {path}")
        if args.serve:
            print(f"dashboard: {base}/ui  (Ctrl-C stops)")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        forecast.release.set()
        stop()
        store.close()


if __name__ == "__main__":
    main()
