"""Input limits: rows and columns of a decoded x above max_rows/max_columns are a 422."""

from __future__ import annotations

import falcon.testing
import numpy as np
import pandas as pd
import pytest

from mlserver import create_app
from mlserver.config import Settings
from mlserver.errors import ConfigurationError
from mlserver.store import SQLStore
from support import registry, regression, wait_until


@pytest.fixture
def client(sqlite_url):
    """An app that takes at most 50 rows and 3 columns of x."""
    app = create_app(registry(), SQLStore(sqlite_url), max_rows=50, max_columns=3)
    yield falcon.testing.TestClient(app)
    app.close()


def body(x, y=None, **params) -> dict:
    fields = {"x": x.to_json(orient="split"), "orient": "split", **params}
    if y is not None:
        fields["y"] = y.to_json(orient="split")
    return fields


def keys(client, model: str) -> list:
    return client.simulate_get(f"/{model}").json["keys"]


def wide(rows: int, columns: int) -> pd.DataFrame:
    return pd.DataFrame(np.ones((rows, columns)), columns=[f"c{i}" for i in range(columns)])


def test_fit_over_a_limit_is_422_naming_it_and_stores_nothing(client):
    """PUT with more rows or columns than allowed is a 422 naming the limit; nothing is stored."""
    x, y = regression(rows=51)
    response = client.simulate_put("/linreg", json=body(x, y))
    assert response.status_code == 422
    assert response.json["description"] == "x has 51 rows; this server takes at most 50 (max_rows)"
    columns = client.simulate_put("/linreg", json=body(wide(5, 4), y.head(5)))
    assert columns.status_code == 422
    assert (
        "x has 4 columns; this server takes at most 3 (max_columns)"
        in (columns.json["description"])
    )
    assert keys(client, "linreg") == []
    at_limit = client.simulate_put("/linreg", json=body(*regression(rows=50)))
    assert at_limit.status_code == 202


def test_predict_and_update_over_a_limit_are_422(client):
    """POST and PATCH check the same limits after decoding, before any model work."""
    x, y = regression(rows=50)
    key = client.simulate_put("/sgd", json=body(x, y)).json["model-key"]
    wait_until(
        lambda: client.simulate_get("/sgd", params={"model-key": key}).json["status"] == "FINISHED"
    )
    big, big_y = regression(rows=60)
    predict = client.simulate_post("/sgd", json=body(big, **{"model-key": key}))
    assert predict.status_code == 422 and "(max_rows)" in predict.json["description"]
    wider = client.simulate_post("/sgd", json=body(wide(2, 4), **{"model-key": key}))
    assert wider.status_code == 422 and "(max_columns)" in wider.json["description"]
    patch = client.simulate_patch("/sgd", json=body(big, big_y, **{"model-key": key}))
    assert patch.status_code == 422 and "(max_rows)" in patch.json["description"]
    assert keys(client, "sgd")[0]["version"] == 1
    fine = client.simulate_post("/sgd", json=body(x, **{"model-key": key}))
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
