"""A real HTTP server on 127.0.0.1 that speaks the chat-completions protocol (for tests).

`ScriptedServer` answers `POST /v1/chat/completions` with the next scripted action: a reply
(with token usage), an HTTP error status (429, 500, ...), a slow reply (to trip the client's
timeout), a raw body (malformed JSON) or a hang. It records every request (body and headers)
and every `GET` (so a test can prove that sandboxed code never reached it). The real `openai`
client talks to it through `base_url`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def reply(content: str | dict, usage: tuple[int, int] | None = None) -> dict[str, Any]:
    """A 200 answer; a dict is sent as its JSON text (the model's reply)."""
    text = content if isinstance(content, str) else json.dumps(content)
    return {"kind": "reply", "content": text, "usage": usage}


def status(code: int, retry_after: float | None = None) -> dict[str, Any]:
    return {"kind": "status", "code": code, "retry_after": retry_after}


def slow(seconds: float, then: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "slow", "seconds": seconds, "then": then}


def raw(body: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"kind": "raw", "body": body, "content_type": content_type}


def hang() -> dict[str, Any]:
    return {"kind": "hang"}


class ScriptedServer:
    """Serves `script` actions in order; an exhausted script answers 503."""

    def __init__(self) -> None:
        self.script: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.gets: list[str] = []
        self.closing = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.gets.append(self.path)
                self._send(200, b"hello", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    server.requests.append({"path": self.path, "body": body, "headers": headers})
                    action = server.script.popleft() if server.script else status(503)
                self._act(action, body)

            def _act(self, action: dict[str, Any], body: dict[str, Any]) -> None:
                kind = action["kind"]
                if kind == "slow":
                    time.sleep(action["seconds"])
                    return self._act(action["then"], body)
                if kind == "hang":
                    server.closing.wait()
                    return None
                if kind == "status":
                    headers = {}
                    if action.get("retry_after") is not None:
                        headers["retry-after"] = str(action["retry_after"])
                    err = {"error": {"message": f"scripted {action['code']}", "type": "test"}}
                    return self._send(action["code"], json.dumps(err).encode(), headers=headers)
                if kind == "raw":
                    return self._send(200, action["body"], action["content_type"])
                content = action["content"]
                chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
                usage = action["usage"] or (chars // 4, len(content) // 4)
                data = {
                    "id": f"chatcmpl-{len(server.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "test"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": usage[0],
                        "completion_tokens": usage[1],
                        "total_tokens": usage[0] + usage[1],
                    },
                }
                return self._send(200, json.dumps(data).encode())

            def _send(self, code: int, payload: bytes, ctype: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:  # fmt: skip
                try:
                    self.send_response(code)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *actions: dict[str, Any]) -> None:
        with self.lock:
            self.script.extend(actions)

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
