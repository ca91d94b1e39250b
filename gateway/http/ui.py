"""The built-in playground (`/ui/`) and live dashboard (`/ui/stats`).

Plain HTML, CSS and JavaScript from `static/`, read once when the app is built and
served without an API key: the APIs the pages call still need one, and the pages ask
for it. The Content-Security-Policy lets the pages load and call this origin only, so
no script, style or request can come from elsewhere, nor from what a model writes
(the pages render model text as text, never as HTML).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from fastapi import APIRouter
from starlette.responses import RedirectResponse, Response

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files: always revalidated, so an upgraded gateway never runs yesterday's page.
    "Cache-Control": "no-cache",
}
_STATIC = resources.files("gateway.http") / "static"
# The pages' own paths; every other file is served under /ui/ by its name.
_PAGES = {"/ui/": "index.html", "/ui/stats": "stats.html"}


def ui_router() -> APIRouter:
    """The pages, their files and `/` (a redirect to the playground)."""
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/", _redirect, methods=["GET"])
    for path, name in ui_files().items():
        router.add_api_route(path, _file(name), methods=["GET"])
    return router


def ui_paths() -> frozenset[str]:
    """What the UI serves: open without an API key."""
    return frozenset(["/", *ui_files()])


def ui_files() -> dict[str, str]:
    """Path to file name, for every file in `static/`."""
    names = sorted(entry.name for entry in _STATIC.iterdir())
    paths = {f"/ui/{name}": name for name in names if name not in _PAGES.values()}
    return {**_PAGES, **paths}


async def _redirect() -> Response:
    return RedirectResponse("/ui/", status_code=307)


def _file(name: str) -> Callable[[], Awaitable[Response]]:
    body = (_STATIC / name).read_bytes()
    media_type = _MEDIA_TYPES[name[name.rindex(".") :]]

    async def serve() -> Response:
        return Response(body, media_type=media_type, headers=_HEADERS)

    return serve
