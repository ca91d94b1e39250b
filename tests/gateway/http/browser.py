"""Headless Chromium over the DevTools protocol, with websockets' client: enough to load
a page, run script in it, answer its requests and take screenshots."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

# Debian's package (`make test` installs it when it can).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

Event = dict[str, Any]


class Browser:
    """One Chromium process, on a profile of its own."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        arguments = [
            CHROMIUM,
            "--headless",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers' /dev/shm is small
            "--no-first-run",
            "about:blank",
        ]
        if os.geteuid() == 0:
            arguments.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
        self.process = subprocess.Popen(
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.socket = connect(_devtools_url(profile, self.process), max_size=None)
        self.handlers: dict[str, Callable[[Event], None]] = {}
        self._last_id = 0

    def send(self, method: str, session: str | None = None, **params: Any) -> int:
        """Sends a command without waiting for its answer."""
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        self.socket.send(json.dumps(message | ({"sessionId": session} if session else {})))
        return self._last_id

    def command(self, method: str, session: str | None = None, **params: Any) -> Any:
        """Sends a command and returns its result; events that come first go to `handlers`."""
        sent = self.send(method, session, **params)
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == sent:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            handler = self.handlers.get(message.get("method", ""))
            if handler is not None:
                handler(message)

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _devtools_url(profile: Path, process: subprocess.Popen[bytes]) -> str:
    """Chromium writes its DevTools port and path to the profile once it listens."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not port_file.is_file() or len(port_file.read_text().split()) < 2:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Chromium did not start (exit status {process.poll()})")
        time.sleep(0.05)
    port, path = port_file.read_text().split()[:2]
    return f"ws://127.0.0.1:{port}{path}"


class Page:
    """A tab. `errors` collects what its scripts throw and what its console reports as an
    error (a Content-Security-Policy refusal among them), network errors aside."""

    def __init__(self, browser: Browser, width: int = 1280, height: int = 860) -> None:
        self.browser = browser
        target = browser.command("Target.createTarget", url="about:blank")["targetId"]
        self.session: str = browser.command("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.errors: list[str] = []
        browser.handlers["Runtime.exceptionThrown"] = lambda event: self.errors.append(
            json.dumps(event["params"]["exceptionDetails"])
        )
        browser.handlers["Log.entryAdded"] = self._logged
        self.command("Runtime.enable")
        self.command("Log.enable")
        self.command(  # the viewport, whatever window headless Chromium opens
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip

    def _logged(self, event: Event) -> None:
        entry = event["params"]["entry"]
        if entry["level"] == "error" and entry["source"] != "network":
            self.errors.append(entry["text"])

    def command(self, method: str, **params: Any) -> Any:
        return self.browser.command(method, self.session, **params)

    def goto(self, url: str) -> None:
        self.command("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", "the page did not load")

    def evaluate(self, expression: str) -> Any:
        """The expression's value (a promise's, awaited), as JSON."""
        result = self.command(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, why: str, seconds: float = 10.0) -> Any:
        """The expression's first truthy value; `why` fails the test after `seconds`.

        An expression that throws counts as false: the page may be loading again.
        """
        deadline = time.monotonic() + seconds
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError as error:
                value, failure = None, str(error)
            else:
                failure = ""
            if value:
                return value
            assert time.monotonic() < deadline, f"{why} {failure}"
            time.sleep(0.05)

    def fill(self, selector: str, value: str) -> None:
        """Sets a field's value as typing would (an input event follows)."""
        self.evaluate(
            f"(() => {{ const field = document.querySelector({json.dumps(selector)});"
            f" field.value = {json.dumps(value)};"
            " field.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )

    def click(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def text(self, selector: str) -> str:
        text: str = self.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")
        return text

    def screenshot(self) -> bytes:
        return base64.b64decode(self.command("Page.captureScreenshot", format="png")["data"])

    def intercept(self, pattern: str, status: int, content_type: str, body: bytes) -> None:
        """Answers requests to URLs matching `pattern` itself, until `stop_intercepting`."""

        def fulfil(event: Event) -> None:
            self.browser.send(
                "Fetch.fulfillRequest",
                self.session,
                requestId=event["params"]["requestId"],
                responseCode=status,
                responseHeaders=[{"name": "Content-Type", "value": content_type}],
                body=base64.b64encode(body).decode(),
            )

        self.browser.handlers["Fetch.requestPaused"] = fulfil
        self.command("Fetch.enable", patterns=[{"urlPattern": pattern}])

    def stop_intercepting(self) -> None:
        self.command("Fetch.disable")
