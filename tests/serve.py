"""Serve the test registry with waitress: `python serve.py STORE_URL`; prints its URL."""

from __future__ import annotations

import logging
import sys

import waitress

from mlserver import create_app
from mlserver.store import SQLStore
from support import registry

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    app = create_app(registry(), SQLStore(sys.argv[1]))
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
    print(f"listening on http://127.0.0.1:{server.effective_port}", flush=True)
    try:
        server.run()
    finally:
        app.close()
