"""The UI's files: served without a key under a strict policy, from the package alone (the
wheel carries them), off with the setting; the APIs they call still need a key."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from engines.settings import SyntheticSettings
from gateway.http.ui import ui_files
from gateway.settings import Settings
from tests.conftest import LiveServer, Scrape, serve

KEY = "ui-key"
FAST = SyntheticSettings(token_seconds=0.001, max_seq_len=512)
STATIC = Path(__file__).parents[3] / "gateway" / "http" / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@pytest.fixture(scope="module")
def keyed() -> Iterator[LiveServer]:
    yield from serve(Settings(engine="synthetic", synthetic=FAST, api_keys=[SecretStr(KEY)]))


@pytest.fixture(scope="module")
def without_ui() -> Iterator[LiveServer]:
    yield from serve(Settings(engine="synthetic", synthetic=FAST, ui=False))


def test_the_pages_and_their_files_are_listed() -> None:
    assert ui_files() == {
        "/ui/": "index.html",
        "/ui/stats": "stats.html",
        "/ui/chat.js": "chat.js",
        "/ui/common.js": "common.js",
        "/ui/stats.js": "stats.js",
        "/ui/style.css": "style.css",
    }


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/stats", "text/html; charset=utf-8"),
        ("/ui/chat.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ],
)
def test_a_file_is_served_without_a_key_under_a_strict_policy(
    keyed: LiveServer, path: str, media_type: str
) -> None:
    response = httpx.get(keyed.url + path)
    assert response.status_code == 200
    assert response.content == (STATIC / ui_files()[path]).read_bytes()
    assert response.headers["content-type"] == media_type
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-cache"


def test_the_root_redirects_to_the_playground(keyed: LiveServer) -> None:
    response = httpx.get(keyed.url + "/")
    assert (response.status_code, response.headers["location"]) == (307, "/ui/")


@pytest.mark.parametrize("path", ["/v1/models", "/metrics", "/ui/no-such-file.js"])
def test_everything_else_still_needs_the_key(keyed: LiveServer, path: str) -> None:
    assert httpx.get(keyed.url + path).status_code == 401
    with_key = httpx.get(keyed.url + path, headers={"Authorization": f"Bearer {KEY}"})
    assert with_key.status_code == (404 if "no-such" in path else 200)


def test_ui_responses_are_counted_by_route(keyed: LiveServer) -> None:
    httpx.get(keyed.url + "/ui/stats")
    before = keyed_scrape(keyed)
    httpx.get(keyed.url + "/ui/stats")
    labels = {"route": "/ui/stats", "status": "200"}
    assert keyed_scrape(keyed).growth(before, "gateway_http_requests_total", **labels) == 1


def keyed_scrape(server: LiveServer) -> Scrape:
    auth = {"Authorization": f"Bearer {KEY}"}
    return Scrape(httpx.get(server.url + "/metrics", headers=auth).text)


@pytest.mark.parametrize("path", ["/", "/ui/", "/ui/stats", "/ui/chat.js"])
def test_the_setting_turns_the_ui_off(without_ui: LiveServer, path: str) -> None:
    response = httpx.get(without_ui.url + path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_pages_load_nothing_from_elsewhere() -> None:
    """Only their own files, by relative path: the UI works without internet."""
    for page in ("index.html", "stats.html"):
        html = (STATIC / page).read_text()
        sources = re.findall(r'(?:src|href)="([^"]*)"', html)
        assert sources, page
        assert all(f"/ui/{s}" in ui_files() or s in ("./", "stats") for s in sources), sources
    for file in STATIC.iterdir():
        assert not re.search(r"https?://|@import|url\(", file.read_text()), file.name


def test_the_wheel_carries_the_static_files(tmp_path: Path) -> None:
    """Built as the Docker image builds it: pyproject.toml, README.md and the packages."""
    root = Path(__file__).parents[3]
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(exist_ok=True)
        shutil.copy(root / name, source / name)
    for package in ("gateway", "engines"):
        shutil.copytree(
            root / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("gateway/http/static/")}
    assert shipped == {f"gateway/http/static/{name}" for name in set(ui_files().values())}
