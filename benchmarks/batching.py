"""Adaptive batching: single-row predicts against concurrency, batched and not, beside the
minimal falcon app (which cannot batch), all measured in one run; and each server's peak RSS.

Every server is its own process (waitress; mlserver with 32 request threads so that up to
32 requests can wait for one model call, the yardstick with 8 as in serve.py); the load
comes from another process over loopback, `c` keep-alive connections on threads.
Printed: req/s, p50 and p99 per case, and the ratios; with `--figure PATH`, an SVG of
req/s and p99 against concurrency. With `--rounds N`, each level is measured N times, the
cases interleaved (their order reversed every other round), and each figure is the median of
its N runs: this machine's runs move by 20-30 %, more than the 5 % asked of batching at one
connection.

    python benchmarks/batching.py [--seconds 4] [--concurrency 1 8 32 64] [--rounds 1]
                                  [--figure FILE.svg]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import joblib
import numpy as np
import orjson
import pandas as pd
import requests
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from serve import YARDSTICK, Server, load, ml_server, wait_finished

CASES = ("yardstick", "mlserver unbatched", "mlserver batched")
#: The models measured: one whose call is cheap next to a request's other work, and one
#: whose call has a large fixed cost (100 trees walked per call, however many rows).
MODELS = {
    "logistic": (LogisticRegression, {}),
    "forest": (RandomForestClassifier, {"n_estimators": 100, "random_state": 0}),
}
REGISTRY = """
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from mlserver import Registry, wrap_estimator

registry = Registry([
    wrap_estimator(LogisticRegression, "logistic"),
    wrap_estimator(RandomForestClassifier, "forest"),
])
"""


def peak_rss_mb(server: Server) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per load case")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--figure", type=Path, help="write an SVG of the results here")
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="the batched server's --max-batch-delay-ms"
    )
    parser.add_argument("--model", choices=MODELS, default="logistic")
    parser.add_argument("--rounds", type=int, default=1, help="runs per level; medians shown")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mlserver-batching-"))
    (workdir / "bench_registry.py").write_text(REGISTRY)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(10_000, 10)), columns=[f"f{i}" for i in range(10)])
    y = pd.DataFrame({"label": (x["f0"] + x["f1"] > 0).astype(int)})
    estimator, kwargs = MODELS[args.model]
    fitted = estimator(**kwargs).fit(x.to_numpy(), y["label"])
    joblib.dump(fitted, workdir / "array.joblib")

    # The version is trained by a server of its own, so that the two measured start alike
    # (a process that trained holds what training left behind).
    trainer = ml_server(workdir)
    fit = {
        "x": x.to_json(orient="split"),
        "y": y.to_json(orient="split"),
        "orient": "split",
        "modkwargs": kwargs,
    }
    route = args.model
    key = requests.put(f"{trainer.base}/{route}", json=fit, timeout=300).json()["model-key"]
    wait_finished(trainer.base, route, key)
    trainer.stop()

    yardstick = Server([sys.executable, "-c", YARDSTICK, str(workdir / "array.joblib")])
    unbatched = ml_server(workdir, "--threads", "32", "--max-batch-rows", "0")
    batched = ml_server(workdir, "--threads", "32", "--max-batch-delay-ms", str(args.delay_ms))
    try:
        row = x.head(1)
        split = orjson.loads(row.to_json(orient="split", double_precision=15))
        body = {"x": split, "orient": "split", "model-key": key}
        targets = {
            "yardstick": (f"{yardstick.base}/predict", {"x": row.to_numpy().tolist()}),
            "mlserver unbatched": (f"{unbatched.base}/{route}", body),
            "mlserver batched": (f"{batched.base}/{route}", body),
        }
        results: dict[str, dict[int, dict]] = {name: {} for name in CASES}
        print(f"{'case':<32}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}  ratios")
        for concurrency in args.concurrency:
            runs: dict[str, list[dict]] = {name: [] for name in CASES}
            for round_ in range(args.rounds):
                order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
                for name in order:
                    url, payload = targets[name]
                    runs[name].append(
                        load(url, json.dumps(payload).encode(), args.seconds, concurrency)
                    )
            for name in CASES:
                results[name][concurrency] = {
                    figure: statistics.median(run[figure] for run in runs[name])
                    for figure in ("rps", "p50", "p99")
                }
            for name in CASES:
                got = results[name][concurrency]
                plain = results["mlserver unbatched"][concurrency]
                floor = results["yardstick"][concurrency]
                ratios = (
                    f"x unbatched {got['rps'] / plain['rps']:.2f}, "
                    f"x yardstick {got['rps'] / floor['rps']:.2f}, "
                    f"p99 x unbatched {got['p99'] / plain['p99']:.2f}"
                )
                label = f"c={concurrency} {name}"
                print(
                    f"{label:<32}{got['rps']:>8.0f}{got['p50']:>9.2f}{got['p99']:>9.2f}  {ratios}"
                )
        for name, server in (
            ("yardstick", yardstick),
            ("unbatched", unbatched),
            ("batched", batched),
        ):
            print(f"peak RSS, {name}: {peak_rss_mb(server):.0f} MB")
        batches = requests.get(f"{batched.base}/metrics", timeout=30).text
        calls = _metric(batches, "mlserver_batch_requests_count")
        requests_answered = _metric(batches, "mlserver_batch_requests_sum")
        if calls:
            average = requests_answered / calls
            print(f"batched server: {average:.1f} requests per model call on average")
    finally:
        for server in (yardstick, unbatched, batched):
            server.stop()
    if args.figure:
        args.figure.write_text(svg(results, args.concurrency))
        print(f"wrote {args.figure}")


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


COLOURS = {"yardstick": "#888888", "mlserver unbatched": "#d95f02", "mlserver batched": "#1b9e77"}
WIDTH, HEIGHT, MARGIN = 360, 240, 48


def _text(x: float, y: float, text: str, size: int = 11, **attributes: str) -> str:
    extra = "".join(f' {name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}"{extra}>{text}</text>'


def _panel(results: dict[str, dict[int, dict]], levels: list[int], metric: str, left: float) -> str:
    """One panel: `metric` of each case against concurrency, levels evenly spaced."""
    top = max(r[c][metric] for r in results.values() for c in levels) * 1.1
    span = (WIDTH - 2 * MARGIN) / max(len(levels) - 1, 1)
    xs = {c: left + MARGIN + i * span for i, c in enumerate(levels)}

    def y(value: float) -> float:
        return HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * value / top

    bottom, right = HEIGHT - MARGIN, left + WIDTH - MARGIN
    title = "req/s" if metric == "rps" else "p99 ms"
    parts = [
        _text(left + WIDTH / 2, 20, f"{title} by concurrency", 13, text_anchor="middle"),
        f'<line x1="{left + MARGIN}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>',
        f'<line x1="{left + MARGIN}" y1="{MARGIN}" x2="{left + MARGIN}" y2="{bottom}" '
        'stroke="black"/>',
    ]
    parts += [_text(x, bottom + 16, str(c), text_anchor="middle") for c, x in xs.items()]
    for tick in (0.0, 0.5, 1.0):
        value = top * tick / 1.1
        parts.append(_text(left + MARGIN - 6, y(value) + 4, f"{value:.0f}", 10, text_anchor="end"))
    for name, by_level in results.items():
        points = " ".join(f"{xs[c]:.1f},{y(by_level[c][metric]):.1f}" for c in levels)
        parts.append(
            f'<polyline fill="none" stroke="{COLOURS[name]}" stroke-width="2" points="{points}"/>'
        )
    return "\n".join(parts)


def svg(results: dict[str, dict[int, dict]], levels: list[int]) -> str:
    """Two panels, req/s and p99 against concurrency, one line per case."""
    panels = [
        _panel(results, levels, metric, i * (WIDTH + 20)) for i, metric in enumerate(("rps", "p99"))
    ]
    legend = [
        _text(MARGIN + i * 170, HEIGHT + 18, name, 12, fill=colour)
        for i, (name, colour) in enumerate(COLOURS.items())
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * WIDTH + 20}" '
        f'height="{HEIGHT + 30}" font-family="sans-serif">\n'
        + "\n".join([*panels, *legend])
        + "\n</svg>\n"
    )


if __name__ == "__main__":
    main()
