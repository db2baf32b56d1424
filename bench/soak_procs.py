"""The processes of bench/soak.py: ragchat's own (serve, worker, watch) on fixed loopback ports so
that a restart comes back at the same address, their RSS, and the outage windows of the faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from conftest import child_env, free_port, wait_until_healthy


class Proc:
    """`ragchat COMMAND` in a subprocess; ready when ``/ragchat/status`` says the models are ready
    (serve) or when its log prints ``ready_line`` (worker, watch)."""

    def __init__(self, name: str, args: list[str], env: dict, workdir: Path, ready_line: str = ""):
        self.name, self.env, self.workdir, self.ready_line = name, env, workdir, ready_line
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if args[0] == "serve" else 0
        self.args = args + (["--port", str(self.port)] if self.port else [])
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout: float = 300) -> "Proc":
        offset = self.log.stat().st_size if self.log.exists() else 0
        env = child_env({"GRADIO_TEMP_DIR": str(self.workdir / "gradio"), **self.env})
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "ragchat.cli", *self.args], cwd=self.workdir, env=env,
                                         stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        if self.port:
            wait_until_healthy(self.url + "/ragchat/health", timeout, self.proc, self.tail)
            while httpx.get(self.url + "/ragchat/status", timeout=10).json().get("models") != "ready":
                self._alive_until(deadline)
        else:
            while self.ready_line not in self.log.read_bytes()[offset:].decode(errors="replace"):
                self._alive_until(deadline)
        self.started = time.monotonic()
        return self

    def _alive_until(self, deadline: float) -> None:
        if self.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{self.name} did not get ready (exit {self.proc.poll()}):\n{self.tail()}")
        time.sleep(0.5)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def rss_mb(pid: int | None, tree: bool = False) -> float | None:
    """Resident memory of a process (with its descendants when tree), in MB."""
    if pid is None:
        return None
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)] if tree else [p]
        total = 0
        for q in procs:
            try:
                total += q.memory_info().rss
            except psutil.Error:
                pass
        return round(total / 1e6, 1)
    except psutil.Error:
        return None


class Outages:
    """Windows (what, down, up) in monotonic seconds; a call overlapping one, or ending within
    ``grace`` seconds after it, happened during an outage."""

    def __init__(self, grace: float):
        self.grace = grace
        self.windows: list[tuple[str, float, float]] = []

    def add(self, what: str, down: float, up: float) -> None:
        self.windows.append((what, down, up))

    def during(self, t0: float, t1: float) -> bool:
        return any(t0 <= up + self.grace and t1 >= down for _, down, up in self.windows)
