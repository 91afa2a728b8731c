"""A headless Chromium (Debian's package) driven over the DevTools protocol, and a static file server.

No browser download, no driver: Chromium is started with a DevTools port, and aiohttp (a dependency of the
provider) speaks the protocol's WebSocket. Both processes run on 127.0.0.1 and are stopped by their PIDs.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Flags that work on this machine's closed network (no background connections, no sandbox as root).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _stop(process: subprocess.Popen[Any], group: bool) -> None:
    """Stop a process we started (its own process group when it has one), by its id."""
    if process.poll() is not None:
        return
    try:
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
        process.wait(timeout=10)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(timeout=10)


@contextmanager
def static_server(directory: Path) -> Iterator[str]:
    """``python -m http.server`` on a free loopback port serving ``directory``; yields its base URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = (
            process.stdout.readline()
        )  # "Serving HTTP on 127.0.0.1 port 41235 (http://127.0.0.1:41235/) ..."
        match = re.search(r"port (\d+)", line)
        assert match, f"http.server did not say its port: {line!r}"
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        _stop(process, group=False)


@dataclass
class PageReport:
    """What a page showed: its title, what the check script found, and what went wrong while loading."""

    url: str
    title: str
    found: dict[str, Any]
    console_errors: list[str] = field(default_factory=list)


# Runs in the page once it has loaded: navigation, headings and the diagrams (SVG objects that loaded).
PAGE_CHECK = """(() => {
  const diagrams = [...document.querySelectorAll('object[type="image/svg+xml"], img[src$=".svg"]')];
  const rendered = diagrams.filter(d => d.contentDocument
      ? !!d.contentDocument.querySelector('svg g')
      : d.complete && d.naturalWidth > 0);
  return {
    nav_links: document.querySelectorAll('.sidebar-tree a.reference').length,
    h1: (document.querySelector('article h1') || {}).textContent || '',
    diagrams: diagrams.length,
    diagrams_rendered: rendered.length,
    diagram_texts: rendered.map(d => d.contentDocument
        ? d.contentDocument.querySelector('svg').textContent.replace(/\\s+/g, ' ').trim() : ''),
  };
})()"""


class Chromium:
    """One headless Chromium; :meth:`open` loads a page in a fresh tab and reports on it."""

    def __init__(self, screenshots: Path) -> None:
        self.screenshots = screenshots
        self._profile = tempfile.mkdtemp(prefix="telnyx-docs-chromium-")
        executable = chromium_path()
        assert executable, "chromium is not installed (make docs installs Debian's package)"
        self._process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: its helpers stop with it
        )
        self._ids = itertools.count(1)

    def close(self) -> None:
        _stop(self._process, group=True)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _browser_ws(self, timeout: float = 60.0) -> str:
        """The browser's DevTools WebSocket URL, from the DevToolsActivePort file Chromium writes."""
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process.poll() is None, f"chromium exited with {self._process.returncode}"
            lines = port_file.read_text().split("\n") if port_file.exists() else []
            if len(lines) >= 2 and lines[1]:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)  # a file Chromium writes once; nothing to await
        raise AssertionError("chromium did not open its DevTools port")

    def open(self, url: str, name: str, timeout: float = 60.0) -> PageReport:
        return asyncio.run(asyncio.wait_for(self._open(url, name), timeout))

    async def _open(self, url: str, name: str) -> PageReport:
        errors: list[str] = []
        async with aiohttp.ClientSession() as http, http.ws_connect(self._browser_ws(), max_msg_size=0) as ws:
            pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
            loaded = asyncio.Event()
            session_id = ""

            async def reader() -> None:
                async for message in ws:
                    data = json.loads(message.data)
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data)
                    method, params = data.get("method"), data.get("params", {})
                    if method == "Page.loadEventFired":
                        loaded.set()
                    elif method == "Runtime.exceptionThrown":
                        details = params["exceptionDetails"]
                        errors.append(
                            f"exception: {details.get('exception', {}).get('description', details)}"
                        )
                    elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                        errors.append("console: " + " ".join(str(a.get("value")) for a in params["args"]))
                    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                        errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")

            async def send(method: str, **params: Any) -> dict[str, Any]:
                message_id = next(self._ids)
                future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                pending[message_id] = future
                message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
                if session_id:
                    message["sessionId"] = session_id
                await ws.send_str(json.dumps(message))
                reply = await future
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})

            reading = asyncio.create_task(reader())
            try:
                target = await send("Target.createTarget", url="about:blank")
                attached = await send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
                session_id = attached["sessionId"]
                for domain in ("Page", "Runtime", "Log"):
                    await send(f"{domain}.enable")
                await send(
                    "Emulation.setDeviceMetricsOverride",
                    width=1280,
                    height=900,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                await send("Page.navigate", url=url)
                await loaded.wait()  # fires after every subresource, the diagrams' SVG objects included
                result = await send("Runtime.evaluate", expression=PAGE_CHECK, returnByValue=True)
                title = (await send("Runtime.evaluate", expression="document.title", returnByValue=True))[
                    "result"
                ]
                shot = await send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
                self.screenshots.mkdir(parents=True, exist_ok=True)
                (self.screenshots / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
                await send("Target.closeTarget", targetId=target["targetId"])
            finally:
                reading.cancel()
        return PageReport(
            url=url, title=str(title["value"]), found=result["result"]["value"], console_errors=errors
        )
