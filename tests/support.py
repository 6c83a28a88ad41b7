"""Running a real `tensorboard` process for tests, as a user starts it.

`running_tensorboard(logdir)` starts the installed console script on a port
the OS picks (`--port 0`), waits until the server answers, yields its base URL
(ending in "/"), and always stops the process afterwards. Every wait is
bounded; a server that does not come up fails with its own log in the error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0

_SERVING = re.compile(r"TensorBoard \S+ at (http://\S+?/?) \(Press CTRL\+C to quit\)")


def tensorboard_command() -> list[str]:
    """The console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "tensorboard"
    if script.exists():
        return [str(script)]
    found = shutil.which("tensorboard")
    return [found] if found else [sys.executable, "-m", "tensorboard.main"]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def fetch(url: str, timeout: float = 30.0) -> Response:
    """GET `url`; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval=0.25):
    """Polls `predicate` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, ValueError) as e:  # not up yet, or a half-written answer
            last_error = e
            result = None
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(
        f"Timed out after {timeout:.0f}s waiting for {what}; last error: {last_error!r}"
    )


class _LogReader:
    """Drains the server's output in a thread, so its pipe never fills."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in iter(stream.readline, ""):
            self.lines.append(line)
        stream.close()

    def url(self) -> str | None:
        for line in list(self.lines):
            m = _SERVING.search(line)
            if m:
                return m.group(1).rstrip("/") + "/"
        return None

    def text(self) -> str:
        return "".join(self.lines)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    # The Rust data server is a child of this process, in its process group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_tensorboard(
    logdir: str | os.PathLike,
    *extra_args: str,
    load_fast: bool = False,
    timeout: float = START_TIMEOUT,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Starts `tensorboard --logdir logdir` on 127.0.0.1 and yields its base URL.

    `extra_args` are appended to the command line (e.g.
    "--samples_per_plugin=activations=5"). The URL serves the plugin routes
    under `data/plugin/activations/`. The server is ready when
    `data/plugins_listing` answers; its first load of the log directory may
    still be running, so poll data routes with `wait_until`.
    """
    cmd = [
        *tensorboard_command(),
        "--logdir",
        os.fspath(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        f"--load_fast={'true' if load_fast else 'false'}",
        *extra_args,
    ]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    log = _LogReader(proc.stdout)
    try:

        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited with code {proc.returncode}:\n{log.text()}")
            url = log.url()
            return url if url and fetch(url + "data/plugins_listing", 5).status == 200 else None

        try:
            url = wait_until(ready, timeout, "tensorboard to serve")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{' '.join(cmd)}\n{log.text()}") from None
        yield url
    finally:
        _stop(proc)
