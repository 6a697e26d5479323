"""`research-loop serve`: the runs in a browser, read and decided there (Starlette, Jinja2 templates).

An approval writes to the user's code, so the app guards it: the server binds loopback unless told otherwise;
every request needs the random token printed at start (given once in the URL, then kept in a SameSite=Strict
cookie); every POST carries the token in a form field too, which another site's page cannot know, and a POST
from another origin is refused: no forged form can decide a run (CSRF). Files are served only from inside
their run's folder, checked after resolving links. Approve and reject call `review.approve` / `review.reject`,
the functions the CLI calls: the same refusals, the same ledger.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

import templates
from agent import runs
from agent.analyse.verdict import fmt, fmt_p, signed
from agent.config import Settings
from agent.review import dashboards, history, review
from agent.review import pages as web_pages
from agent.schemas import Decision
from experiments import storage as storages
from experiments.records import Model

F = TypeVar("F", bound="TokenForm")
POLL_S = 2
HEADERS = {
    "X-Frame-Options": "DENY",  # no page of another site can frame the Approve button
    "Referrer-Policy": "same-origin",  # "no-referrer" would make browsers send `Origin: null` on our forms
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
NO_TOKEN = "this needs the token: open the URL `research-loop serve` printed when it started"


class TokenForm(Model):
    token: str


class ApproveForm(TokenForm):
    commit: bool = False


class RejectForm(TokenForm):
    reason: str = ""


def new_token() -> str:
    return secrets.token_urlsafe(24)


def inside(root: Path, relative: str) -> Path:
    """`relative` under `root`, resolved (links followed); refused when it lands anywhere else."""
    base = root.resolve()
    path = (base / relative).resolve()
    if path == base or not path.is_relative_to(base):
        raise HTTPException(403, f"{relative!r} is outside {root}; only files inside it are served")
    return path


def environment() -> jinja2.Environment:
    """The HTML templates (templates/serve/): values escaped unless marked safe, undefined names errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files(templates))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fmt=fmt, signed=signed, p=fmt_p)
    return env


class Site:
    """The app's state (settings, token, templates, dashboards) and its endpoints."""

    def __init__(self, settings: Settings, token: str, host: str = "127.0.0.1") -> None:
        self.settings = settings
        self.reports_dir = settings.reports_dir
        self.token = token
        self.cookie = "research_loop_" + hashlib.sha256(token.encode()).hexdigest()[:12]
        self.templates = Jinja2Templates(env=environment())
        self.dashboards = dashboards.Dashboards(host)
        self._deciding = threading.Lock()

    def app(self) -> Starlette:
        def of_run(path: str, endpoint: Callable[..., Any], methods: tuple[str, ...] = ("GET",)) -> Route:
            return Route("/runs/{run_id}" + path, endpoint, methods=list(methods))

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            yield
            self.dashboards.close()

        return Starlette(
            routes=[
                Route("/", self.index),
                of_run("", self.run),
                of_run("/progress", self.progress),
                of_run("/files/{name:path}", self.file),
                of_run("/approve", self.approve, ("POST",)),
                of_run("/reject", self.reject, ("POST",)),
                of_run("/optuna-dashboard", self.dashboard, ("POST",)),
            ],
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self.guard)],
            exception_handlers={HTTPException: self.error, runs.CorruptRun: self.error},
            lifespan=lifespan,
        )

    def _same(self, given: str) -> bool:
        return secrets.compare_digest(given.encode(), self.token.encode())

    async def guard(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Every request needs the token: a page in the URL (once: it goes into the cookie, and out of the
        address bar) or the cookie; a POST in its form, which its endpoint checks (`_form`)."""
        given = request.query_params.get("token")
        if request.method == "GET" and given is not None and self._same(given):
            response: Response = RedirectResponse(str(request.url.remove_query_params("token")), 303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
        elif request.method == "POST" or self._same(request.cookies.get(self.cookie, "")):
            response = await call_next(request)
        else:
            response = self._page(
                request, "serve/error.html.j2", {"message": NO_TOKEN, "reports_dir": ""}, 403
            )
        response.headers.update(HEADERS)
        return response

    async def _form(self, request: Request, kind: type[F]) -> F:
        """A POST's form, refused unless it comes from this site's own page and carries the token."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, f"a form from {origin} is refused; decide from this site's own pages")
        raw = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if not self._same(raw.get("token", "")):
            raise HTTPException(403, NO_TOKEN)
        try:
            return kind.model_validate(raw)
        except ValidationError as exc:
            wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise HTTPException(400, f"the form is not valid ({wrong})") from None

    def _folder(self, request: Request) -> Path:
        run_id = request.path_params["run_id"]
        folder = inside(self.reports_dir, run_id)
        if folder.parent != self.reports_dir.resolve() or not (folder / runs.RUN_FILE).is_file():
            raise HTTPException(404, f"no run {run_id!r} under {self.reports_dir}")
        return folder

    def _page(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        return self.templates.TemplateResponse(
            request,
            name,
            {"token": self.token, "reports_dir": str(self.reports_dir), **context},
            status_code=status,
        )

    async def error(self, request: Request, exc: Exception) -> Response:
        """A refused request, or a run folder that cannot be read: its one line, on a page."""
        if isinstance(exc, HTTPException):
            return self._page(request, "serve/error.html.j2", {"message": exc.detail}, exc.status_code)
        return self._page(request, "serve/error.html.j2", {"message": str(exc)}, 500)

    def index(self, request: Request) -> Response:
        try:
            rows, problem = history.overview(self.reports_dir), ""
        except review.Refused as exc:
            rows, problem = [], str(exc)
        return self._page(request, "serve/index.html.j2", {"rows": rows, "problem": problem})

    def _run_page(
        self, request: Request, folder: Path, refusal: review.Refused | None = None, status: int = 200
    ) -> Response:
        prefix = f"/runs/{quote(folder.name)}"
        page = web_pages.run_page(folder, self.settings, lambda name: f"{prefix}/files/{quote(name)}")
        context = {
            "page": page,
            "prefix": prefix,
            "poll_s": POLL_S,
            "dashboard": dashboards.installed() and page.storage is not None,
            "refusal": str(refusal) if refusal else "",
            "conflict": web_pages.diff_lines(refusal.conflict) if refusal else [],
        }
        return self._page(request, "serve/run.html.j2", context, status)

    def run(self, request: Request) -> Response:
        return self._run_page(request, self._folder(request))

    def progress(self, request: Request) -> Response:
        """The progress box alone, which a running run's page fetches every POLL_S seconds."""
        live = web_pages.progress(self._folder(request), self.settings)
        return self._page(request, "serve/_progress.html.j2", {"progress": live})

    def file(self, request: Request) -> Response:
        path = inside(self._folder(request), request.path_params["name"])
        if not path.is_file():
            raise HTTPException(404, f"no file {request.path_params['name']!r} in this run")
        return FileResponse(path)

    def _decide(self, decide: Callable[..., Decision], *args: Any) -> Decision:
        """One decision at a time, so two clicks cannot both pass the ledger's decided-once check."""
        with self._deciding:
            return decide(*args)

    async def _decision(self, request: Request, decide: Callable[..., Decision], *args: Any) -> Response:
        folder = self._folder(request)
        try:
            await run_in_threadpool(self._decide, decide, folder, *args)
        except review.Refused as exc:
            return self._run_page(request, folder, exc, 409)
        return RedirectResponse(f"/runs/{quote(folder.name)}", 303)

    async def approve(self, request: Request) -> Response:
        form = await self._form(request, ApproveForm)
        return await self._decision(request, review.approve, form.commit, False, self.settings)

    async def reject(self, request: Request) -> Response:
        form = await self._form(request, RejectForm)
        return await self._decision(request, review.reject, form.reason)

    async def dashboard(self, request: Request) -> Response:
        """Open the run's studies in optuna-dashboard: start its server (once) and go there."""
        await self._form(request, TokenForm)
        folder = self._folder(request)
        info = runs.load(folder)
        url = web_pages.storage_of(folder, info, self.settings)
        if url is None or not dashboards.installed():
            raise HTTPException(404, "no study storage to open, or optuna-dashboard is not installed")
        try:
            port = await run_in_threadpool(self.dashboards.port, info.run_id, url)
        except (OSError, storages.StorageUnavailable) as exc:
            raise HTTPException(503, f"optuna-dashboard could not start: {exc}") from None
        return RedirectResponse(str(request.url.replace(port=port, path="/dashboard", query="")), 303)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, made before anything is printed: a port in use is one clear line, port 0 (any
    free one) says which it got, and the printed URL queues connections even before the server is up."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


def server(app: Starlette) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", server_header=False, lifespan="on"))
