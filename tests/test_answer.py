"""POST /v1/answer, extractive (no LLM): real model, real index, real app; exact citations across languages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citesearch.api.answer import NO_ANSWER, LabelFilter, clean_sentence
from citesearch.api.app import create_app
from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder
from tests.chat_support import articles

LABEL = re.compile(r"\[\d+\]")


@pytest.fixture(scope="module")
def client(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("answer") / "d")
    app = create_app(settings, embedder_factory=lambda _m: embedder)
    with TestClient(app) as c:
        r = c.post("/v1/articles", json={"articles": articles()})
        assert r.status_code == 200, r.text
        yield c


def check_exact(c: TestClient, body: dict[str, Any]) -> None:
    """Every label of the answer is a citation, and every citation is the article's own text."""
    labels = {x["label"] for x in body["citations"]}
    assert set(LABEL.findall(body["answer"])) == labels
    for cit in body["citations"]:
        article = c.get(f"/v1/articles/{cit['article_id']}").json()
        assert article["text"][cit["char_start"] : cit["char_end"]] == cit["text"]
        # The article's own URL, else a link to the cited span here.
        span = f"http://testserver/articles/{cit['article_id']}#chars={cit['char_start']}-{cit['char_end']}"
        assert cit["url"] == (article["url"] or span)
        rank = int(cit["label"].strip("[]"))
        assert body["results"][rank - 1]["article_id"] == cit["article_id"]


@pytest.mark.parametrize(
    ("query", "article", "expect"),
    [
        ("Does NVIDIA's H20 chip have a backdoor?", "seed-h20", "backdoors"),
        ("Wie viel hat die neue Brücke über die Spree gekostet?", "de-spree-bruecke", "38 Millionen"),
        (
            "How long will Madrid's metro line 12 be closed?",
            "es-metro-madrid",
            "tres semanas",
        ),  # cross-lingual
        ("上海今年夏天的降雨量比常年多多少？", "zh-shanghai-rain", "百分之三十"),
        ("英伟达因出口管制可能损失多少钱？", "seed-h20", "$5.5 billion"),  # Chinese question, English text
    ],
)
def test_extractive_answer_quotes_the_answering_sentence(
    client: TestClient, query: str, article: str, expect: str
) -> None:
    r = client.post("/v1/answer", json={"query": query})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "extractive" and body["answered"] and not body["llm_fallback"]
    assert body["citations"], body
    check_exact(client, body)
    assert body["citations"][0]["article_id"] == article
    # Every quoted sentence is a result's highlight that the answer model says answers.
    for c in body["citations"]:
        result = body["results"][int(c["label"].strip("[]")) - 1]
        assert result["highlight"]["text"] == c["text"] and result["highlight"]["answers"]
        assert result["highlight"]["probability"] is not None
    assert any(expect in c["text"] for c in body["citations"] if c["article_id"] == article)
    # Quoted in the passage's own language (the sentence itself, labels aside).
    assert expect in body["answer"]
    if expect == "backdoors":  # the seed's own footnote "[2]" is in the cited text, not in the answer
        assert any("H20 chip [2]." in c["text"] for c in body["citations"])
        assert "H20 chip [2]." not in body["answer"] and "H20 chip." in body["answer"]


@pytest.mark.parametrize(
    ("query", "language"),
    [("Who won the football world cup in 1998?", "en"), ("Wie backe ich ein Sauerteigbrot?", "de")],
)
def test_says_so_when_nothing_answers(client: TestClient, query: str, language: str) -> None:
    body = client.post("/v1/answer", json={"query": query}).json()
    assert body["answered"] is False and body["citations"] == []
    assert body["answer"] == NO_ANSWER[language]
    assert body["results"]  # the passages are still there to look at


def test_streams_deltas_then_the_whole_answer(client: TestClient) -> None:
    with client.stream(
        "POST", "/v1/answer", json={"query": "Does the H20 chip have a backdoor?", "stream": True}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [e for e in r.read().decode().split("\n\n") if e]
    names = [e.split("\n")[0] for e in events]
    assert names[-1] == "event: done" and set(names[:-1]) == {"event: delta"}
    deltas = "".join(json.loads(e.split("data: ", 1)[1])["text"] for e in events[:-1])
    done = json.loads(events[-1].split("data: ", 1)[1])
    assert deltas == done["answer"] and done["answered"]
    check_exact(client, done)


def test_chat_completions_extractive_with_footnotes(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={
            "model": "citesearch",
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Wie viel hat die Spree-Brücke gekostet?"}],
                },
            ],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    content = body["choices"][0]["message"]["content"]
    assert "38 Millionen" in content
    cit = body["citations"][0]
    assert f"{cit['label']} {cit['title']}, {cit['url']}" in content  # the footnote
    assert client.get("/v1/models").json()["data"][0]["id"] == "citesearch"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/answer", {"query": "   "}, 422, "validation_error"),
        ("/v1/answer", {"query": "ok?", "top_k": 0}, 422, "validation_error"),
        ("/v1/answer", {"query": "ok?", "stream": "yes"}, 422, "validation_error"),
        ("/v1/answer", {"query": "ok?", "llm": True}, 422, "validation_error"),
        ("/v1/answer", [1, 2], 400, "malformed_json"),
        (
            "/v1/chat/completions",
            {"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]},
            404,
            "not_found",
        ),
        ("/v1/chat/completions", {"model": "citesearch", "messages": []}, 422, "validation_error"),
        (
            "/v1/chat/completions",
            {"model": "citesearch", "messages": [{"role": "system", "content": "x"}]},
            422,
            "validation_error",
        ),
        (
            "/v1/chat/completions",
            {"model": "citesearch", "messages": [{"role": "user", "content": "?!"}]},
            422,
            "validation_error",
        ),
        (
            "/v1/chat/completions",
            {"model": "citesearch", "messages": [{"role": "robot", "content": "hi"}]},
            422,
            "validation_error",
        ),
    ],
)
def test_bad_input_is_a_4xx_with_the_error_envelope(
    client: TestClient, path: str, body: Any, status: int, code: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and isinstance(err["details"], list)


def test_malformed_json_body(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"


# ---- label handling (pure logic) ------------------------------------------------------------------


def test_label_filter_keeps_given_labels_and_reports_the_others() -> None:
    f = LabelFilter(3)
    out = f.feed("No backdoor [1]. Price [7] and [2, 9]; see [3][4].") + f.close()
    assert out == "No backdoor [1]. Price and [2]; see [3]."
    assert f.used == [1, 2, 3] and f.dropped == ["[7]", "[9]", "[4]"]


def test_label_filter_never_shows_a_refused_label_split_across_pieces() -> None:
    text = "Yes [1]. No [12]. Maybe [2]."
    for size in (1, 2, 3, 5):
        f = LabelFilter(2)
        shown = [f.feed(text[i : i + size]) for i in range(0, len(text), size)] + [f.close()]
        assert "".join(shown) == "Yes [1]. No. Maybe [2]."
        assert not any("12" in s for s in shown) and f.dropped == ["[12]"]


def test_clean_sentence_removes_the_sources_own_numbers() -> None:
    assert (
        clean_sentence("Chips have no backdoors [2].\n  Really [3][4]") == "Chips have no backdoors. Really"
    )
