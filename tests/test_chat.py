"""Generated answers against a real OpenAI-compatible server process (tests/fake_llm.py), and the
official OpenAI Python client against our /v1/chat/completions on a real uvicorn server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from citesearch.api.app import create_app
from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder
from tests.chat_support import articles, fake_llm, uvicorn_thread

REPLY = "NVIDIA says its H20 chips have no backdoors [1]. Prices rose [9]."
SHOWN = "NVIDIA says its H20 chips have no backdoors [1]. Prices rose."


@pytest.fixture(scope="module")
def llm() -> Iterator[str]:
    with fake_llm() as url:
        yield url


@pytest.fixture(scope="module")
def server(embedder: Embedder, llm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("chat") / "d",
        llm_url=f"{llm}/v1",
        llm_model="tiny-test-model",
        llm_timeout_s=2.0,
    )
    app = create_app(settings, embedder_factory=lambda _m: embedder)
    with uvicorn_thread(app) as base:
        r = httpx.post(f"{base}/v1/articles", json={"articles": articles()}, timeout=300)
        assert r.status_code == 200, r.text
        yield base


def tell(llm: str, reply: str = REPLY, delay_s: float = 0.0, status: int = 200) -> None:
    httpx.post(
        f"{llm}/control", json={"reply": reply, "delay_s": delay_s, "status": status}
    ).raise_for_status()


def exact(server: str, citations: list[dict[str, Any]]) -> None:
    for c in citations:
        text = httpx.get(f"{server}/v1/articles/{c['article_id']}").json()["text"]
        assert text[c["char_start"] : c["char_end"]] == c["text"]


def sse_events(server: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    with httpx.stream("POST", f"{server}/v1/answer", json=body, timeout=120) as r:
        assert r.status_code == 200
        raw = r.read().decode()
    out = []
    for block in filter(None, raw.split("\n\n")):
        head, data = block.split("\n", 1)
        out.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_generated_answer_keeps_given_labels_and_drops_others(server: str, llm: str) -> None:
    tell(llm)
    r = httpx.post(f"{server}/v1/answer", json={"query": "Does the H20 chip have a backdoor?"}, timeout=120)
    body = r.json()
    assert body["mode"] == "generated" and not body["llm_fallback"]
    assert body["answer"] == SHOWN and body["dropped_labels"] == ["[9]"]
    assert [c["label"] for c in body["citations"]] == ["[1]"]
    assert body["citations"][0]["article_id"] == body["results"][0]["article_id"] == "seed-h20"
    exact(server, body["citations"])
    # What the LLM was given: our system prompt, then the numbered sources and the question.
    sent = httpx.get(f"{llm}/last").json()
    assert sent["model"] == "tiny-test-model"
    assert sent["messages"][0]["role"] == "system"
    user = sent["messages"][-1]["content"]
    assert user.startswith("Sources:\n\n[1] 英伟达回应:没后门") and user.endswith(
        "Question: Does the H20 chip have a backdoor?"
    )
    assert "[2]." not in user and "(2)." in user  # the source's own footnote numbers are not labels


def test_generated_answer_streams_without_ever_showing_a_refused_label(server: str, llm: str) -> None:
    tell(llm)
    events = sse_events(server, {"query": "Does the H20 chip have a backdoor?", "stream": True})
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) > 3 and not any("9" in d for d in deltas)
    name, done = events[-1]
    assert name == "done" and "".join(deltas) == done["answer"] == SHOWN
    assert done["dropped_labels"] == ["[9]"] and done["mode"] == "generated"


@pytest.mark.parametrize("stream", [False, True])
def test_a_slow_llm_gives_the_extractive_answer_flagged(server: str, llm: str, stream: bool) -> None:
    tell(llm, delay_s=8)
    query = {"query": "Wie viel hat die neue Brücke über die Spree gekostet?", "stream": stream}
    if stream:
        body = sse_events(server, query)[-1][1]
    else:
        body = httpx.post(f"{server}/v1/answer", json=query, timeout=120).json()
    assert body["mode"] == "extractive" and body["llm_fallback"] and body["llm_error"] == "timeout"
    assert "38 Millionen" in body["answer"] and body["answered"]
    exact(server, body["citations"])


def test_a_failing_llm_gives_the_extractive_answer_flagged(server: str, llm: str) -> None:
    tell(llm, status=500)
    body = httpx.post(f"{server}/v1/answer", json={"query": "H20 backdoor"}, timeout=120).json()
    assert body["mode"] == "extractive" and body["llm_fallback"] and body["llm_error"] == "unavailable"
    body = httpx.post(
        f"{server}/v1/answer", json={"query": "H20 backdoor", "mode": "extractive"}, timeout=120
    ).json()
    assert body["mode"] == "extractive" and not body["llm_fallback"] and body["llm_error"] is None


# ---- the official OpenAI client ------------------------------------------------------------------


def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=120, max_retries=0)


def test_openai_client_plain_with_the_conversation(server: str, llm: str) -> None:
    tell(llm)
    oa = client(server)
    assert [m.id for m in oa.models.list()] == ["citesearch"]
    resp = oa.chat.completions.create(
        model="citesearch",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Tell me about NVIDIA's H20."},
            {"role": "assistant", "content": "It is a chip made for China."},
            {"role": "user", "content": "Does it have a backdoor?"},
        ],
    )
    content = resp.choices[0].message.content or ""
    citations = (resp.model_extra or {})["citations"]
    assert content.startswith(SHOWN)
    assert content.endswith(f"[1] 英伟达回应:没后门, {citations[0]['url']}")  # the footnote
    assert citations[0]["label"] == "[1]" and resp.choices[0].finish_reason == "stop"
    exact(server, citations)
    sent = httpx.get(f"{llm}/last").json()["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "Tell me about NVIDIA's H20." and sent[-1]["content"].endswith(
        "Does it have a backdoor?"
    )


def test_openai_client_streaming(server: str, llm: str) -> None:
    tell(llm)
    stream = client(server).chat.completions.create(
        model="citesearch",
        messages=[{"role": "user", "content": "Does the H20 have a backdoor?"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith(SHOWN) and "[9]" not in text
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    citations = (last.model_extra or {})["citations"]
    assert text.endswith(f"[1] 英伟达回应:没后门, {citations[0]['url']}")


def test_openai_client_errors(server: str) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client(server).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert "citesearch" in str(exc.value)
    with pytest.raises(openai.UnprocessableEntityError):
        client(server).chat.completions.create(
            model="citesearch", messages=[{"role": "user", "content": " "}]
        )
