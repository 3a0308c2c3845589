"""The review page: a Starlette application over a :class:`.groups.Review`.

Every request needs the session's token (in the query, ``?token=``, or the
``X-Imgindex-Token`` header; state-changing requests are POSTs that need the
header, which other web pages cannot set); the Host header must name this
machine (no DNS rebinding). Images are served by file id, only those of a
group, as pictures made here (:mod:`.pictures`): never a path taken from a
request. Everything shown is escaped by the templates; the page runs only its
own script (a Content-Security-Policy says so to the browser).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from imgindex.errors import ImgindexError, ReportError

from .groups import ACTIONS, GROUP_PAGE, SORTS, View
from .pictures import SIZES, PictureError, Pictures
from .session import Review

HERE = Path(__file__).parent
#: The page's own files, by the name they are served under (never a path from a request).
ASSETS = {"review.js": "text/javascript", "review.css": "text/css"}
TOKEN_HEADER = "x-imgindex-token"
#: Pictures are made from content: a URL names one for good.
PICTURE_CACHE = "private, max-age=31536000, immutable"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cross-origin-resource-policy": "same-origin",
}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    return secrets.token_urlsafe(24)


class _TokenAndHeaders:
    """Refuses any request without the token (POSTs: in the header) and adds the security
    headers to every response."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(TOKEN_HEADER.encode(), b"")
        if scope["method"] not in ("POST",) and not given:
            given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0].encode()
        if not secrets.compare_digest(given, self.token):
            response = PlainTextResponse("a valid token is needed: open the address imgindex review printed", 403)
            await self._send_with_headers(response, scope, receive, send)
            return
        await self._send_with_headers(self.app, scope, receive, send)

    async def _send_with_headers(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await app(scope, receive, send_secured)


def review_url(host: str, port: int, token: str) -> str:
    """The address to open: this machine's name for a wildcard host, brackets for IPv6."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def review_hosts(host: str) -> list[str]:
    """The Host headers the page accepts: this machine's names, the host it listens on, and
    any name when it listens everywhere (the token still guards)."""
    if host in ("", "0.0.0.0", "::"):
        return ["*"]
    names = ["127.0.0.1", "localhost", "[::1]"]
    bare = host.strip("[]")
    return [*names, f"[{bare}]" if ":" in bare else bare]


def view_of(params: Any) -> View:
    """The overview's filter, order and page from query parameters (checked: what is not
    understood is left at its default)."""

    def number(name: str) -> int | None:
        text = (params.get(name) or "").strip()
        return int(text) if text.isascii() and text.isdigit() and len(text) < 9 else None

    return View(
        text=(params.get("q") or "")[:500],
        folder=(params.get("folder") or "")[:4096],
        format=(params.get("format") or "")[:20],
        undecided=params.get("undecided") == "1",
        max_distance=number("max_distance"),
        identical=params.get("identical") == "1",
        sort=params.get("sort") if params.get("sort") in SORTS else "bytes",
        ascending=params.get("asc") == "1",
        page=number("page") or 1,
    )


def create_app(review: Review, pictures: Pictures, token: str, *, hosts: list[str] | None = None) -> Starlette:
    """The application; ``hosts``: the names the page may be reached by (default: this machine's)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    templates = Jinja2Templates(env=env)

    def link(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        return path + "?" + urlencode({**query, "token": token})

    def context(**values: Any) -> dict[str, Any]:
        return {
            "link": link,
            "token": token,
            "mode": review.options.mode,
            "read_only": review.read_only,
            "when": _when,
            "size_text": _size_text,
            **values,
        }

    def overview(request: Request) -> Response:
        view = view_of(request.query_params)
        snap = review.current()
        page = snap.page(view)
        return templates.TemplateResponse(
            request,
            "overview.html",
            context(
                view=view,
                page=page,
                stats=snap.stats(),
                formats=snap.formats(),
                batches=review.batches(),
                report=snap.report,
            ),
            headers={"cache-control": "no-store"},
        )

    def group(request: Request) -> Response:
        view = view_of(request.query_params)
        snap = review.current()
        found = snap.group_by_id(request.path_params["group_id"], GROUP_PAGE)
        if found is None:
            return RedirectResponse(link("/", **view.params()), 303)
        before, after = snap.neighbours(found.id, view)
        return templates.TemplateResponse(
            request,
            "group.html",
            context(
                view=view,
                group=found,
                before=before,
                after=after,
                verdicts={m.file_id: snap.decided.verdict(found.kept.sha256, m.sha256) for m in found.duplicates},
                batches=review.batches(),
            ),
            headers={"cache-control": "no-store"},
        )

    def picture(request: Request) -> Response:
        size = request.path_params["size"]
        member = review.latest().member(request.path_params["file_id"])
        if member is None or size not in SIZES:
            return PlainTextResponse("no such image in the review", 404)
        return _picture(lambda: pictures.thumbnail(member, size), "image/jpeg")

    def difference(request: Request) -> Response:
        snap = review.latest()
        a, b = snap.member(request.path_params["a"]), snap.member(request.path_params["b"])
        if a is None or b is None:
            return PlainTextResponse("no such image in the review", 404)
        return _picture(lambda: pictures.difference(a, b), "image/png")

    def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return PlainTextResponse("not found", 404)
        return FileResponse(HERE / "assets" / name, media_type=ASSETS[name], headers={"cache-control": "no-cache"})

    async def decide(request: Request) -> Response:
        body = await _json(request)
        action, group_id, file_id = body.get("action"), body.get("group"), body.get("image")
        if action not in ACTIONS or not isinstance(group_id, int) or not isinstance(file_id, int | None):
            return JSONResponse({"error": "action, group and image expected"}, 400)
        try:
            batch = review.decide(action, group_id, file_id)
        except ReportError as e:
            return JSONResponse({"error": str(e)}, 400)
        except ImgindexError as e:  # the index is read-only here, say
            return JSONResponse({"error": str(e)}, 409)
        if batch is None:
            return JSONResponse({"error": "that group is not in the review any more"}, 409)
        still = review.current().group_by_id(group_id) is not None
        return JSONResponse({"batch": batch.id, "summary": batch.summary, "group": still})

    async def bulk(request: Request) -> Response:
        body = await _json(request)
        action, query = body.get("action"), body.get("view")
        if not isinstance(action, str) or not isinstance(query, str):
            return JSONResponse({"error": "action and view expected"}, 400)
        view = view_of({k: v[0] for k, v in parse_qs(query.lstrip("?")).items()})
        try:
            groups, rows, batch = review.bulk(action, view, commit=body.get("commit") is True)  # type: ignore[arg-type]
        except ReportError as e:
            return JSONResponse({"error": str(e)}, 400)
        except ImgindexError as e:
            return JSONResponse({"error": str(e)}, 409)
        return JSONResponse({"groups": groups, "images": rows, "batch": batch.id if batch else None})

    async def undo(request: Request) -> Response:
        body = await _json(request)
        batch_id = body.get("batch")
        if not isinstance(batch_id, int | None):
            return JSONResponse({"error": "batch expected"}, 400)
        try:
            undone = review.undo(batch_id)
        except ImgindexError as e:
            return JSONResponse({"error": str(e)}, 409)
        if undone is None:
            return JSONResponse({"error": "nothing to undo"}, 409)
        return JSONResponse({"batch": undone.id, "summary": undone.summary})

    routes = [
        Route("/", overview),
        Route("/group/{group_id:int}", group),
        Route("/picture/{file_id:int}/{size:str}", picture),
        Route("/difference/{a:int}/{b:int}", difference),
        Route("/assets/{name:str}", asset),
        Route("/api/decide", decide, methods=["POST"]),
        Route("/api/bulk", bulk, methods=["POST"]),
        Route("/api/undo", undo, methods=["POST"]),
    ]
    allowed = hosts or ["127.0.0.1", "localhost", "[::1]"]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=allowed),
            Middleware(_TokenAndHeaders, token=token),
        ],
    )


def _picture(make: Callable[[], Path], media_type: str) -> Response:
    """A picture made (or found in the cache) by ``make``; 410 when its image cannot be shown."""
    try:
        path = make()
    except PictureError as e:
        return PlainTextResponse(str(e), 410)
    return FileResponse(path, media_type=media_type, headers={"cache-control": PICTURE_CACHE})


async def _json(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return {}
    try:
        body = json.loads(await request.body())
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


def _size_text(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"
