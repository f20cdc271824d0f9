"""Headless Chromium driven over the DevTools protocol, for tests of HTML pages.

Chromium runs with ``--remote-debugging-pipe``: it reads protocol messages (JSON, each ended by a
NUL byte) on fd 3 and writes on fd 4. A two-line Python shim puts our pipe ends on those numbers
and execs the browser, so no pre-exec hook is needed. Console messages of level error and
warning, uncaught exceptions and log entries of level error (failed resource loads, CSP
violations) are collected while the page loads; then the whole page is captured as a PNG.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHIM = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); " \
       "os.execv(sys.argv[3], sys.argv[3:])"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--remote-debugging-pipe", "--hide-scrollbars"]


def chromium_exe() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageResult:
    png: bytes
    width: int
    height: int
    console_errors: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # results of the evaluated expressions


class Browser:
    """One headless Chromium; ``open(url, ...)`` loads a page in it."""

    def __init__(self, user_data_dir: Path, timeout: float = 60.0):
        exe = chromium_exe()
        if exe is None:
            raise RuntimeError("chromium is not installed (make sysdeps installs it)")
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        cmd = [sys.executable, "-c", SHIM, str(to_chrome_r), str(from_chrome_w), exe, *FLAGS,
               f"--user-data-dir={user_data_dir}", "about:blank"]
        self.proc = subprocess.Popen(cmd, pass_fds=(to_chrome_r, from_chrome_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited (status {self.proc.poll()})")
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and wait for its result (events meanwhile go to ``self.events``)."""
        mid = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read_message(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, name: str, deadline: float) -> dict[str, Any]:
        for i, e in enumerate(self.events):
            if e["method"] == name:
                return self.events.pop(i)
        while True:
            msg = self._read_message(deadline)
            if msg.get("method") == name:
                return msg
            if "method" in msg:
                self.events.append(msg)

    def open(self, url: str, *, width: int = 1280, height: int = 900,
             evaluate: dict[str, str] | None = None, settle_s: float = 0.3) -> PageResult:
        """Load ``url``, evaluate ``evaluate`` (name → JS expression), capture the full page."""
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        session = self.call("Target.attachToTarget", {"targetId": page["targetId"],
                                                      "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(domain, session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        self.events.clear()
        nav = self.call("Page.navigate", {"url": url}, session=session)
        if nav.get("errorText"):
            raise RuntimeError(f"{url}: {nav['errorText']}")
        self.wait_event("Page.loadEventFired", time.monotonic() + self.timeout)
        values = {}
        for name, expr in (evaluate or {}).items():
            res = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                            session=session)
            if "exceptionDetails" in res:
                values[name] = RuntimeError(str(res["exceptionDetails"]))
            else:
                values[name] = res["result"].get("value")
        time.sleep(settle_s)
        metrics = self.call("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        full_w, full_h = int(size["width"]), int(size["height"])
        shot = self.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": full_w, "height": full_h, "scale": 1}},
            session=session)
        # drain what arrived while capturing
        self.call("Runtime.evaluate", {"expression": "1"}, session=session)
        return PageResult(base64.b64decode(shot["data"]), full_w, full_h,
                          console_errors(self.events), values)

    def close(self) -> None:
        try:
            self._send("Browser.close")
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Errors and warnings a page produced: console.error/warn/assert, uncaught exceptions,
    and browser log entries of level error/warning (failed loads, blocked content)."""
    out = []
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning",
                                                                           "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            out.append(f"console.{p['type']}: {args}")
        elif e["method"] == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif e["method"] == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
            entry = p["entry"]
            out.append(f"log {entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
    return out
