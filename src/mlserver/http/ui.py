"""The dashboard: HTML pages under `/ui`, rendered on the server from Jinja2 templates shipped
in the package (no JavaScript, no CDN, no build step).

Pages read through `Service.overview`; actions call the same service methods as their API
routes and need the same scopes. Security:

- with auth on, a token is entered once at `/ui/login` and kept in an HttpOnly,
  SameSite=Strict cookie scoped to `/ui` (an `Authorization: Bearer` header works too);
  pages need the `predict` scope, and nothing but the login form is shown without it;
- every action is a POST form carrying a CSRF token that must equal the value of a
  SameSite=Strict cookie (double submit), and a cross-site `Origin` is refused;
- templates escape every value (model names, keys, errors and metadata are user data), and
  every answer carries a strict Content-Security-Policy.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import falcon

from mlserver.errors import InvalidPayload, MLServerError
from mlserver.http.answers import lineage
from mlserver.http.auth import SCOPES, bearer_token
from mlserver.http.errors import status_of
from mlserver.http.metrics import Metrics
from mlserver.http.ui_actions import ACTIONS, target
from mlserver.http.ui_format import FILTERS
from mlserver.service import Service, first_line
from mlserver.store.base import Status

if TYPE_CHECKING:
    import jinja2

    from mlserver.http.auth import Tokens

__all__ = ["Dashboard", "routes"]

PREFIX = "/ui"
TOKEN_COOKIE = "mlserver_ui_token"
CSRF_COOKIE = "mlserver_ui_csrf"
#: The scope every page needs when auth is on.
PAGE_SCOPE = "predict"
#: Largest form body read (a login or an action: a few fields).
_FORM_BYTES = 16 * 1024
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STATIC = os.path.join(os.path.dirname(__file__), "static")
_EVERY_SCOPE = frozenset(SCOPES)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the scopes of their token (every scope when auth is off)."""

    scopes: frozenset[str]
    signed_in: bool
    csrf: str

    def can(self, scope: str) -> bool:
        return scope in self.scopes


class _Refused(Exception):
    """A form the dashboard will not act on: answered with an error page."""

    def __init__(self, status: str, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class _SignIn(Exception):
    """Raised by a page that needs a token it was not given: the login form answers, 401
    (no valid token) or 403 (a token without the scope), as the API would."""

    def __init__(self, message: str | None = None, status: str = falcon.HTTP_401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Dashboard:
    """Rendering, sessions and CSRF for every page; the templates load on the first page."""

    def __init__(self, service: Service, metrics: Metrics, tokens: Tokens | None) -> None:
        self.service = service
        self.metrics = metrics
        self.tokens = tokens
        self._env: jinja2.Environment | None = None

    @property
    def env(self) -> jinja2.Environment:
        if self._env is None:
            import jinja2  # PERF: loaded with the first page, not at start-up

            env = jinja2.Environment(
                loader=jinja2.PackageLoader("mlserver.http", "templates"),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.filters.update(
                FILTERS,
                first_line=first_line,
                lineage=lineage,
                q=lambda text: quote(str(text), safe=""),
            )
            env.globals.update(PREFIX=PREFIX, Status=Status, urlencode=urlencode)
            self._env = env
        return self._env

    # -- who is asking ---------------------------------------------------------------------

    def viewer(self, req: falcon.Request, resp: falcon.Response) -> Viewer:
        """The viewer of a page (the login form answers instead when a token is needed)."""
        csrf = self.csrf(req, resp)
        if self.tokens is None:
            return Viewer(_EVERY_SCOPE, False, csrf)
        token = bearer_token(req) or req.cookies.get(TOKEN_COOKIE)
        return Viewer(self.scopes_of(token), True, csrf)

    def csrf(self, req: falcon.Request, resp: falcon.Response) -> str:
        """The browser's CSRF token: its cookie's, or a new one set once per answer."""
        csrf = req.context.get("csrf") or req.cookies.get(CSRF_COOKIE) or ""
        if len(csrf) != 32:
            csrf = os.urandom(16).hex()
            self.cookie(req, resp, CSRF_COOKIE, csrf)
        req.context.csrf = csrf
        return csrf

    def scopes_of(self, token: str | None) -> frozenset[str]:
        """The scopes of a token that may see the pages (_SignIn for any other)."""
        if not token or self.tokens is None:
            raise _SignIn()
        scopes = self.tokens.scopes_of(token)
        if scopes is None:
            raise _SignIn("That token is not valid (any more): enter a valid one.")
        if PAGE_SCOPE not in scopes:
            needs = f"That token lacks the {PAGE_SCOPE!r} scope the dashboard needs."
            raise _SignIn(needs, falcon.HTTP_403)
        return scopes

    def form(self, req: falcon.Request) -> dict[str, str]:
        """The fields of a POSTed form, after its CSRF check (403 unless it passes)."""
        if (req.content_type or "").split(";")[0].strip() != falcon.MEDIA_URLENCODED:
            raise _Refused(
                falcon.HTTP_415, "Unsupported media type", "A dashboard form is urlencoded."
            )
        origin = req.get_header("Origin")
        # NOTE: behind a proxy, the forwarded host is the one the browser saw.
        if origin and urlsplit(origin).netloc not in (req.netloc, req.forwarded_host):
            raise _Refused(falcon.HTTP_403, "Forbidden", "A form from another site is refused.")
        if (req.content_length or 0) > _FORM_BYTES:
            raise _Refused(
                falcon.HTTP_413, "Payload too large", "A dashboard form is a few fields."
            )
        raw = req.bounded_stream.read(_FORM_BYTES).decode("utf-8", "replace")
        fields = {name: values[0] for name, values in parse_qs(raw).items()}
        expected = req.cookies.get(CSRF_COOKIE) or ""
        given = fields.pop("csrf", "")
        if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
            raise _Refused(
                falcon.HTTP_403,
                "Forbidden",
                "The form's CSRF token is missing or stale: reload the page and try again.",
            )
        return fields

    def cookie(self, req: falcon.Request, resp: falcon.Response, name: str, value: str) -> None:
        resp.set_cookie(
            name,
            value,
            path=PREFIX,
            http_only=True,
            same_site="Strict",
            secure=req.forwarded_scheme == "https",
        )

    # -- answers ---------------------------------------------------------------------------

    def render(
        self,
        resp: falcon.Response,
        template: str,
        status: str = falcon.HTTP_200,
        **context: Any,
    ) -> None:
        secure(resp)
        resp.status = status
        resp.content_type = "text/html; charset=utf-8"
        resp.text = self.env.get_template(template).render(**context)

    def page(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        template: str,
        read: Callable[[Viewer], dict[str, Any]],
    ) -> None:
        """Render `template` with what `read` returns (its "status" is the answer's code,
        200 without), or the login or error page instead."""
        try:
            viewer = self.viewer(req, resp)
        except _SignIn as sign_in:
            self.login_page(req, resp, sign_in)
            return
        try:
            context = read(viewer)
        except MLServerError as exc:
            self.error_page(resp, viewer, exc)
            return
        status = context.pop("status", falcon.HTTP_200)
        self.render(resp, template, status, viewer=viewer, **context)

    def login_page(
        self, req: falcon.Request, resp: falcon.Response, sign_in: _SignIn | None = None
    ) -> None:
        sign_in = sign_in or _SignIn()
        viewer = Viewer(frozenset(), False, self.csrf(req, resp))
        self.render(resp, "login.html", sign_in.status, viewer=viewer, message=sign_in.message)

    def refused(self, resp: falcon.Response, refused: _Refused) -> None:
        viewer = Viewer(frozenset(), False, "")
        self.render(
            resp,
            "error.html",
            refused.status,
            viewer=viewer,
            title=refused.title,
            message=refused.message,
        )

    def see_other(self, resp: falcon.Response, location: str) -> None:
        secure(resp)
        resp.status = falcon.HTTP_303
        resp.location = location

    def error_page(self, resp: falcon.Response, viewer: Viewer, exc: MLServerError) -> None:
        status, title = status_of(exc)
        self.render(resp, "error.html", status, viewer=viewer, title=title, message=str(exc))


def secure(resp: falcon.Response) -> None:
    """The headers every dashboard answer carries."""
    for name, value in _HEADERS.items():
        resp.set_header(name, value)


class _Page:
    """A dashboard resource: it renders through the app's one Dashboard."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard


class ModelsPage(_Page):
    """`/ui`: every model, what it supports and its keys by status."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        overview = self.dashboard.service.overview
        self.dashboard.page(req, resp, "models.html", lambda v: {"models": overview.models()})


class KeysPage(_Page):
    """`/ui/models/{model_name}`: a page of the model's keys, by status and search."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, model_name: str) -> None:
        overview = self.dashboard.service.overview

        def read(viewer: Viewer) -> dict[str, Any]:
            view = overview.keys(
                model_name,
                status=_text(req, "status"),
                contains=_text(req, "q"),
                after=_text(req, "after"),
            )
            return {"view": view}

        self.dashboard.page(req, resp, "keys.html", read)


class KeyPage(_Page):
    """`/ui/models/{model_name}/keys/{key}`: a key's versions, aliases and scores."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, model_name: str, key: str) -> None:
        overview = self.dashboard.service.overview

        def read(viewer: Viewer) -> dict[str, Any]:
            from mlserver.http.charts import line_chart  # PERF: loaded with the first chart

            view = overview.key(model_name, key, before=_text(req, "before"))
            chart = line_chart([(f"v{s.version}", s.score) for s in view.scores])
            return {"view": view, "chart": chart}

        self.dashboard.page(req, resp, "key.html", read)


class VersionPage(_Page):
    """`/ui/models/{model_name}/keys/{key}/versions/{n}`: everything about one version."""

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, model_name: str, key: str, n: str
    ) -> None:
        overview = self.dashboard.service.overview

        def read(viewer: Viewer) -> dict[str, Any]:
            version = overview.version(model_name, key, n)
            return {"model": model_name, "key": key, "v": version}

        self.dashboard.page(req, resp, "version.html", read)


class JobsPage(_Page):
    """`/ui/jobs`: RUNNING versions with their elapsed time, and the latest failures."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        overview = self.dashboard.service.overview

        def read(viewer: Viewer) -> dict[str, Any]:
            running, failed = overview.jobs()
            return {"running": running, "failed": failed}

        self.dashboard.page(req, resp, "jobs.html", read)


class LivePage(_Page):
    """`/ui/live`: request rate, p50/p99 latency and error rates per model, refreshing."""

    #: Seconds between the page's own refreshes.
    REFRESH = 5

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        recent = self.dashboard.metrics.recent

        def read(viewer: Viewer) -> dict[str, Any]:
            from mlserver.http.charts import sparkline  # PERF: loaded with the first chart

            rows = [(row, sparkline(row.series)) for row in recent.summary()]
            return {
                "rows": rows,
                "window": recent.window,
                "slot": recent.slot,
                "refresh": self.REFRESH,
                "pid": os.getpid(),
                "at": time.strftime("%H:%M:%S", time.gmtime()),
            }

        self.dashboard.page(req, resp, "live.html", read)


class ActionPage(_Page):
    """`/ui/actions/{action}`: GET asks for confirmation, POST does it and shows the result."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, action: str) -> None:
        todo = ACTIONS.get(action)
        if todo is None:
            self.dashboard.refused(resp, _unknown(action))
            return
        fields = {
            name: value
            for name, value in req.params.items()
            if isinstance(value, str) and name != "csrf"
        }

        def read(viewer: Viewer) -> dict[str, Any]:
            target(self.dashboard.service, fields)
            allowed = viewer.can(todo.scope)
            return {
                "status": falcon.HTTP_200 if allowed else falcon.HTTP_403,
                "action": action,
                "todo": todo,
                "question": todo.confirm(fields),
                "fields": fields,
                "allowed": allowed,
            }

        self.dashboard.page(req, resp, "confirm.html", read)

    def on_post(self, req: falcon.Request, resp: falcon.Response, action: str) -> None:
        todo = ACTIONS.get(action)
        dashboard = self.dashboard
        if todo is None:
            dashboard.refused(resp, _unknown(action))
            return
        try:
            viewer = dashboard.viewer(req, resp)
            fields = dashboard.form(req)
        except _SignIn as sign_in:
            dashboard.login_page(req, resp, sign_in)
            return
        except _Refused as refused:
            dashboard.refused(resp, refused)
            return
        if not viewer.can(todo.scope):
            dashboard.render(
                resp,
                "error.html",
                falcon.HTTP_403,
                viewer=viewer,
                title="Forbidden",
                message=f"{todo.title} needs a token with the {todo.scope!r} scope.",
            )
            return
        try:
            target(dashboard.service, fields)
            done = todo.run(dashboard.service, fields)
        except MLServerError as exc:
            dashboard.error_page(resp, viewer, exc)
            return
        dashboard.render(resp, "done.html", viewer=viewer, todo=todo, message=done, fields=fields)


class LoginPage(_Page):
    """`/ui/login`: a token, entered once, kept in a cookie; `/ui/logout` forgets it."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.dashboard.login_page(req, resp)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        dashboard = self.dashboard
        try:
            fields = dashboard.form(req)
        except _Refused as refused:
            dashboard.refused(resp, refused)
            return
        if dashboard.tokens is None:
            dashboard.see_other(resp, PREFIX)
            return
        token = fields.get("token", "").strip()
        try:
            dashboard.scopes_of(token)
        except _SignIn as sign_in:
            dashboard.login_page(req, resp, sign_in)
            return
        dashboard.cookie(req, resp, TOKEN_COOKIE, token)
        dashboard.see_other(resp, PREFIX)

    def on_post_logout(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            self.dashboard.form(req)
        except _Refused as refused:
            self.dashboard.refused(resp, refused)
            return
        resp.unset_cookie(TOKEN_COOKIE, path=PREFIX)
        self.dashboard.see_other(resp, f"{PREFIX}/login")


class StaticFile:
    """`/ui/static/ui.css`: the one stylesheet (served by the app: no CDN)."""

    css: bytes | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.css is None:  # read on first use: building an app does no I/O
            with open(os.path.join(_STATIC, "ui.css"), "rb") as handle:
                self.css = handle.read()
        secure(resp)
        resp.set_header("Cache-Control", "max-age=3600")
        resp.content_type = "text/css; charset=utf-8"
        resp.data = self.css


def _unknown(action: str) -> _Refused:
    known = ", ".join(ACTIONS)
    return _Refused(falcon.HTTP_404, "Not found", f"No action {action!r}; there are {known}.")


def _text(req: falcon.Request, name: str) -> str | None:
    value = req.params.get(name)
    if isinstance(value, list):
        raise InvalidPayload(f"{name} must be given once", name)
    return value or None


def routes(
    service: Service, metrics: Metrics, tokens: Tokens | None
) -> list[tuple[str, object, str | None]]:
    """(template, resource, suffix) of every dashboard route, for `create_app`."""
    dashboard = Dashboard(service, metrics, tokens)
    login = LoginPage(dashboard)
    return [
        (PREFIX, ModelsPage(dashboard), None),
        (f"{PREFIX}/login", login, None),
        (f"{PREFIX}/logout", login, "logout"),
        (f"{PREFIX}/jobs", JobsPage(dashboard), None),
        (f"{PREFIX}/live", LivePage(dashboard), None),
        (f"{PREFIX}/static/ui.css", StaticFile(), None),
        (f"{PREFIX}/models/{{model_name}}", KeysPage(dashboard), None),
        (f"{PREFIX}/models/{{model_name}}/keys/{{key}}", KeyPage(dashboard), None),
        (
            f"{PREFIX}/models/{{model_name}}/keys/{{key}}/versions/{{n}}",
            VersionPage(dashboard),
            None,
        ),
        (f"{PREFIX}/actions/{{action}}", ActionPage(dashboard), None),
    ]
