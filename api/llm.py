"""A client for any OpenAI-compatible chat server (Ollama, vLLM, llama.cpp's server), plain and streaming.

Only `POST {CITESEARCH_LLM_URL}/chat/completions` is used. Every failure (refused connection,
timeout, an error status, a body that is not a completion) becomes `LLMError` with a short public
reason, so that the caller can fall back to an extractive answer and say why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

Message = dict[str, str]


class LLMError(Exception):
    """The LLM did not answer: `reason` is `timeout`, `unavailable` or `bad_response` (public)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class LLMClient:
    """Chat completions from one server and model; `timeout_s` bounds connecting and each read."""

    def __init__(self, url: str, model: str, api_key: str | None, timeout_s: float) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(timeout_s)

    def _body(self, messages: list[Message], stream: bool) -> dict[str, Any]:
        return {"model": self.model, "messages": messages, "stream": stream, "temperature": 0}

    def complete(self, messages: list[Message]) -> str:
        """The whole answer at once."""
        try:
            with httpx.Client(timeout=self.timeout) as http:
                r = http.post(self.url, json=self._body(messages, False), headers=self.headers)
        except httpx.TimeoutException:
            raise LLMError("timeout") from None
        except httpx.HTTPError as exc:
            raise LLMError("unavailable", type(exc).__name__) from None
        if r.status_code != 200:
            raise LLMError("unavailable", f"status {r.status_code}")
        try:
            content = r.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError("bad_response") from None
        if not isinstance(content, str):
            raise LLMError("bad_response")
        return content

    def stream(self, messages: list[Message]) -> Iterator[str]:
        """The answer's pieces as the server sends them (SSE `data:` lines up to `[DONE]`)."""
        try:
            with (
                httpx.Client(timeout=self.timeout) as http,
                http.stream("POST", self.url, json=self._body(messages, True), headers=self.headers) as r,
            ):
                if r.status_code != 200:
                    raise LLMError("unavailable", f"status {r.status_code}")
                for line in r.iter_lines():
                    piece = _sse_piece(line)
                    if piece is None:
                        return
                    if piece:
                        yield piece
        except httpx.TimeoutException:
            raise LLMError("timeout") from None
        except httpx.HTTPError as exc:
            raise LLMError("unavailable", type(exc).__name__) from None


def _sse_piece(line: str) -> str | None:
    """The text a `data:` line adds ("" for other lines and empty deltas), None at `[DONE]`."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        delta = json.loads(data)["choices"][0].get("delta") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise LLMError("bad_response") from None
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""
