"""Serve the test registry by hand as the tests do: `python tests/serve.py STORE_URL [OPTION...]`
runs the same `ml-server serve` command line as `support.ServerProcess` (it prints its URL)."""

from __future__ import annotations

import os
import sys

from support import serve_command, server_environment

if __name__ == "__main__":
    command = serve_command(sys.argv[1], *sys.argv[2:])
    os.execve(command[0], command, server_environment())
