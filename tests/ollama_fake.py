"""A small, real HTTP server that speaks Ollama's documented REST API, for tests.

Ollama cannot be installed on the machines that run these tests, so the Ollama code path is
exercised against this server over real sockets, through the real ``ollama`` client and
``langchain-ollama``. It follows https://docs.ollama.com/api:

- ``GET /`` ("Ollama is running"), ``GET /api/version``, ``GET /api/tags``
- ``POST /api/show``
- ``POST /api/chat``: NDJSON streamed with chunked transfer encoding by default, one JSON object
  per line; ``"stream": false`` gives one JSON object. The last object has ``done: true``,
  ``done_reason`` and the usage counters (durations in nanoseconds). ``options.num_predict`` caps
  the reply and then ``done_reason`` is ``"length"``.
- ``POST /api/embed``: ``input`` is a string or a list; vectors are deterministic hashed bags of
  words, L2-normalised like Ollama's.
- errors are ``{"error": "..."}`` with 400 or 404 (``model 'x' not found``).

Faults, for the failure paths (set ``fault`` at construction or at any time; the mid-stream ones
need a reply of three or more tokens):

- ``"slow"``: wait ``slow_s`` before answering a chat (like a model still loading).
- ``"cut"``: close the connection after two chunks, without ending the chunked body.
- ``"truncate"``: end the body cleanly after two chunks, with no ``done`` line (a proxy that gave up).
- ``"malformed"``: send a line that is not JSON after the first chunk.
- ``"error"``: send ``{"error": ...}`` mid-stream, as Ollama does when the runner fails.

It leaves out everything ragchat does not call: generate, pull/push/create/copy/delete, tools,
images, thinking, structured outputs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | Callable[[dict[str, Any]], str]

FAULTS = (None, "slow", "cut", "truncate", "malformed", "error")
_TOKEN = re.compile(r"\s*\S+|\s+")  # words with their leading space, like a BPE stream
_WORD = re.compile(r"[\u4e00-\u9fff]|\w+")  # one token per CJK character, else per word


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _canonical(name: str) -> str:
    # Ollama treats "llama3.2" and "llama3.2:latest" as the same model.
    return name if ":" in name else f"{name}:latest"


def hashed_embedding(text: str, dim: int) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words get a high cosine."""
    vec = [0.0] * dim
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dim
        vec[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class FakeOllama:
    """Start with ``with FakeOllama(...) as ollama:``; ``ollama.url`` is its base URL.

    ``reply`` is the assistant's text, or a function of the parsed /api/chat request body that
    returns it (to echo which sources a prompt carried, for example). Every request is recorded in
    ``requests`` as ``(method, path, body)``.
    """

    def __init__(
        self,
        models: tuple[str, ...] | list[str] = ("llama3.2",),
        reply: Reply = "Hello from the fake Ollama.",
        fault: str | None = None,
        slow_s: float = 5.0,
        token_delay_s: float = 0.0,
        embed_dim: int = 64,
    ):
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, not {fault!r}")
        self.models = [_canonical(m) for m in models]
        self.reply = reply
        self.fault = fault
        self.slow_s = slow_s
        self.token_delay_s = token_delay_s
        self.embed_dim = embed_dim
        self.requests: list[tuple[str, str, Any]] = []
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeOllama:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True  # a stuck handler must not block close()
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-ollama", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes handlers sleeping in the "slow" fault
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- behaviour -------------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        return _canonical(name) in self.models

    def reply_for(self, body: dict[str, Any]) -> str:
        return self.reply(body) if callable(self.reply) else self.reply

    def sleep(self, seconds: float) -> None:
        self._closing.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOllama
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as Ollama (Go net/http) does

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # -- plumbing --------------------------------------------------------------------------------

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _read_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            self._send_json(400, {"error": f"invalid JSON: {exc}"})
            return None
        if not isinstance(body, dict):
            self._send_json(400, {"error": "request body must be a JSON object"})
            return None
        self.fake.requests.append((self.command, self.path, body))
        return body

    def _model_or_error(self, body: dict[str, Any]) -> str | None:
        name = body.get("model") or body.get("name")  # "name" is the older spelling
        if not name:
            self._send_json(400, {"error": "model is required"})
            return None
        if not self.fake.has(name):
            self._send_json(404, {"error": f"model '{name}' not found"})
            return None
        return name

    # -- routes ----------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.fake.requests.append(("GET", self.path, None))
        if self.path == "/":
            self._send_text(200, "Ollama is running")
        elif self.path == "/api/version":
            self._send_json(200, {"version": "0.12.0"})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [self._model_summary(m) for m in self.fake.models]})
        else:
            self._send_text(404, "404 page not found")

    def do_POST(self) -> None:
        routes = {"/api/chat": self._chat, "/api/show": self._show, "/api/embed": self._embed}
        route = routes.get(self.path)
        if route is None:
            self._read_body()
            self._send_text(404, "404 page not found")
            return
        body = self._read_body()
        if body is not None:
            route(body)

    def _model_summary(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-10-03T23:34:03.409490317-07:00",
            "size": 2019393189,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": self._details(name),
        }

    @staticmethod
    def _details(name: str) -> dict[str, Any]:
        family = re.sub(r"[^a-z]", "", name.split(":")[0].lower()) or "llama"
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        }

    def _show(self, body: dict[str, Any]) -> None:
        name = self._model_or_error(body)
        if name is None:
            return
        self._send_json(
            200,
            {
                "modelfile": f"FROM {name}\n",
                "parameters": "stop \"<|eot_id|>\"",
                "template": "{{ .Prompt }}",
                "details": self._details(name),
                "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
                "capabilities": ["completion"],
                "modified_at": "2025-10-03T23:34:03.409490317-07:00",
            },
        )

    def _embed(self, body: dict[str, Any]) -> None:
        name = self._model_or_error(body)
        if name is None:
            return
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            self._send_json(400, {"error": "input must be a string or a list of strings"})
            return
        self._send_json(
            200,
            {
                "model": body["model"],
                "embeddings": [hashed_embedding(t, self.fake.embed_dim) for t in texts],
                "total_duration": 14143917,
                "load_duration": 1019500,
                "prompt_eval_count": sum(len(_WORD.findall(t)) for t in texts),
            },
        )

    def _chat(self, body: dict[str, Any]) -> None:
        name = self._model_or_error(body)
        if name is None:
            return
        if not isinstance(body.get("messages", []), list):
            self._send_json(400, {"error": "messages must be a list"})
            return
        fake = self.fake
        started = time.perf_counter_ns()
        if fake.fault == "slow":
            fake.sleep(fake.slow_s)
        tokens = _TOKEN.findall(fake.reply_for(body))
        limit = (body.get("options") or {}).get("num_predict")
        done_reason = "stop"
        if isinstance(limit, int) and 0 <= limit < len(tokens):
            tokens, done_reason = tokens[:limit], "length"
        prompt_tokens = sum(len(_WORD.findall(str(m.get("content", "")))) for m in body.get("messages", []))
        final = {
            "model": body["model"],
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": done_reason,
            "total_duration": time.perf_counter_ns() - started,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 2_000_000,
            "eval_count": len(tokens),
            "eval_duration": 3_000_000,
        }

        if body.get("stream", True) is False:
            final["message"]["content"] = "".join(tokens)
            self._send_json(200, final)
            return

        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, token in enumerate(tokens):
            if fake.fault == "cut" and i == 2:
                # Drop the connection without the terminating chunk: a crashed or killed server.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fake.fault == "truncate" and i == 2:
                self._chunk(b"")
                return
            if fake.fault == "malformed" and i == 1:
                self._chunk(b"<html>502 Bad Gateway</html>\n")
            if fake.fault == "error" and i == 1:
                self._chunk(b'{"error":"an error was encountered while running the model"}\n')
                self._chunk(b"")
                return
            line = {"model": body["model"], "created_at": _now(), "message": {"role": "assistant", "content": token}, "done": False}
            self._chunk(json.dumps(line).encode() + b"\n")
            if fake.token_delay_s:
                fake.sleep(fake.token_delay_s)
        final["created_at"] = _now()
        self._chunk(json.dumps(final).encode() + b"\n")
        self._chunk(b"")  # the terminating zero-length chunk
