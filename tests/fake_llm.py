"""A stand-in OpenAI-compatible chat server for tests: it answers what it is told, when it is told.

`python tests/fake_llm.py PORT` serves on 127.0.0.1:PORT and prints "listening" once it accepts:

- `POST /control {"reply": str, "delay_s": float, "status": int}` sets the next answers;
- `POST /v1/chat/completions` answers with `reply` after `delay_s` seconds (or with `status`),
  as one completion, or with `"stream": true` as SSE chunks of a few characters then `[DONE]`;
- `GET /last` returns the last chat request body it received (to check the prompt).

No weights, no model: the protocol only, so the tests can check what citesearch does with it.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATE: dict[str, Any] = {"reply": "", "delay_s": 0.0, "status": 200, "last": None}


class Handler(BaseHTTPRequestHandler):
    """The three routes above."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test's output is enough."""

    def _body(self) -> Any:
        n = int(self.headers.get("content-length", "0"))
        return json.loads(self.rfile.read(n) or b"{}")

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, json.dumps(STATE["last"]).encode())

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/control":
            STATE.update(body)
            self._send(200, b"{}")
            return
        STATE["last"] = body
        time.sleep(float(STATE["delay_s"]))
        if STATE["status"] != 200:
            self._send(int(STATE["status"]), b'{"error": {"message": "told to fail"}}')
        elif body.get("stream"):
            self._stream(str(STATE["reply"]))
        else:
            self._send(200, json.dumps(_completion(str(STATE["reply"]))).encode())

    def _stream(self, reply: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        pieces = [reply[i : i + 3] for i in range(0, len(reply), 3)]
        for piece in [*pieces]:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _completion(reply: str) -> dict[str, Any]:
    return {
        "id": "fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
        ],
    }


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
