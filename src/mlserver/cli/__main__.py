"""`python -m mlserver.cli`: the same as the `ml-server` console script."""

from __future__ import annotations

import sys

from mlserver.cli.main import main

sys.exit(main())
