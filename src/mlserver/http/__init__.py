"""The HTTP face of mlserver: the only package that imports falcon."""

from mlserver.http.app import App, create_app

__all__ = ["App", "create_app"]
