"""The real services of shared mode, started for the tests on loopback ports: a PostgreSQL server
(Debian's package, as the unprivileged `postgres` user when the tests run as root, since PostgreSQL
refuses root), a Chroma server (`chroma run`, from the chromadb package) and an OpenAI-compatible
LLM server (`ragchat llm-server`: llama.cpp's server on the small test model).

Each test gets a database of its own on each server (``Services.settings``), so tests never see
each other's documents.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from conftest import TEST_MODEL, free_port, make_settings, wait_until_healthy


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [p for p in [shutil.which(name)] if p]
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make test` (it installs Debian's postgresql package) "
                           "or `apt-get install postgresql`")
    return found[-1]


class Postgres:
    """root: a folder of its own directly under the temporary folder, so that the `postgres` user
    can reach it (pytest's folders are private to the user running the tests)."""

    def __init__(self):
        root = Path(tempfile.mkdtemp(prefix="ragchat-pg-"))
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.user = "ragchat"
        as_root = os.geteuid() == 0
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        root.mkdir(parents=True, exist_ok=True)
        if as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(root, pw.pw_uid, pw.pw_gid)

    def _run(self, *cmd: str) -> None:
        out = subprocess.run([*self._prefix, *cmd], capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stdout}{out.stderr}")

    def start(self) -> "Postgres":
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8")
        return self.restart()

    def restart(self) -> "Postgres":
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
                  "start")
        return self

    def stop(self, keep: bool = False) -> None:
        """Stop the server; keep: leave its data for restart()."""
        if self.data.exists():
            subprocess.run([*self._prefix, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


class Process:
    """A server in a subprocess, stopped at the end; its output goes to a log file."""

    def __init__(self, cmd: list[str], log: Path, env: dict | None = None):
        self.cmd, self.log = cmd, log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, ready_url: str, timeout: float = 120, headers: dict | None = None) -> "Process":
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env)
        wait_until_healthy(ready_url, timeout, self.proc, self.tail, headers)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def chroma_server(path: Path, port: int, log: Path) -> Process:
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    return Process([chroma, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)], log,
                   env={"ANONYMIZED_TELEMETRY": "False"})


class Services:
    def __init__(self, root: Path):
        self.root = root
        self.postgres = Postgres()
        self.chroma_port = free_port()
        self.chroma = chroma_server(root / "chroma", self.chroma_port, root / "chroma.log")
        self.llm_port = free_port()
        self.llm_key = uuid.uuid4().hex
        self.llm = Process([sys.executable, "-m", "ragchat.cli", "llm-server", "--port", str(self.llm_port)],
                           root / "llm.log", env={"RAGCHAT_LLM__BUILTIN_MODEL": TEST_MODEL,
                                                  "RAGCHAT_LLM_SERVER_KEY": self.llm_key, "HF_HUB_OFFLINE": "1"})

    @property
    def chroma_url(self) -> str:
        return f"http://127.0.0.1:{self.chroma_port}"

    @property
    def llm_url(self) -> str:
        return f"http://127.0.0.1:{self.llm_port}/v1"

    def start(self) -> "Services":
        self.root.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        self.chroma.start(self.chroma_url + "/api/v2/heartbeat")
        self.llm.start(f"http://127.0.0.1:{self.llm_port}/health")
        return self

    def stop(self) -> None:
        self.llm.stop()
        self.chroma.stop()
        self.postgres.stop()

    def fresh(self) -> dict:
        """Settings for a deployment of its own on these servers: a new database on each."""
        return {
            "catalog_url": self.postgres.create_database(),
            "shared": {"chroma_url": self.chroma_url, "chroma_database": "t-" + uuid.uuid4().hex[:12],
                       "follow_interval_s": 0.2, "job_stale_s": 4},
        }

    def env(self, fresh: dict, lexical_cache: Path) -> dict:
        """The same deployment as RAGCHAT_* variables, for servers started in subprocesses."""
        s = fresh["shared"]
        return {"RAGCHAT_CATALOG_URL": fresh["catalog_url"], "RAGCHAT_SHARED__CHROMA_URL": s["chroma_url"],
                "RAGCHAT_SHARED__CHROMA_DATABASE": s["chroma_database"],
                "RAGCHAT_SHARED__FOLLOW_INTERVAL_S": str(s["follow_interval_s"]),
                "RAGCHAT_SHARED__JOB_STALE_S": str(s["job_stale_s"]),
                "RAGCHAT_SHARED__LEXICAL_CACHE": str(lexical_cache)}

    def settings(self, tmp_path: Path, **overrides):
        fresh = self.fresh()
        shared = {**fresh["shared"], "lexical_cache": tmp_path / "lexical-cache", **overrides.pop("shared", {})}
        return make_settings(tmp_path / "store", catalog_url=fresh["catalog_url"], shared=shared, **overrides)
