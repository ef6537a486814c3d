"""The answer-sentence model through the real app: highlights, honest answers, labels, chat follow-ups.

The real embedding model and the real answer model (prepared by `make setup`), a real index on
disk, the real HTTP app with its lifespan. The corpus is the seed article, three short articles in
German, Spanish and Chinese, and a Chinese article on civil disobedience whose sentences sit close
to unrelated questions by cosine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from citesearch.api.answer import FRAME, NO_ANSWER
from citesearch.api.app import create_app
from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder, ModelError
from citesearch.embeddings.answer_model import AnswerModel, Calibration
from tests.chat_support import ROOT, articles

NO_BACKDOORS = 'do not contain any "backdoors"'
LABEL = re.compile(r"\[(\d+)\]")


def distractors() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        (ROOT / "tests" / "data" / "answers" / "distractors.json").read_text(encoding="utf-8")
    )
    return data


@pytest.fixture(scope="module")
def client(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("answer-model") / "d")
    with TestClient(create_app(settings, embedder_factory=lambda _m: embedder)) as c:
        r = c.post("/v1/articles", json={"articles": [*articles(), *distractors()]})
        assert r.status_code == 200, r.text
        yield c


@pytest.fixture(scope="module")
def model() -> AnswerModel:
    loaded = Settings().load_answer_model()
    assert loaded is not None
    return loaded


def test_the_seed_answer_quotes_the_no_backdoors_sentence_alone(client: TestClient) -> None:
    body = client.post("/v1/answer", json={"query": "Does NVIDIA's H20 chip have a backdoor?"}).json()
    assert body["answered"] and len(body["citations"]) == 1, body["answer"]
    (cit,) = body["citations"]
    assert cit["article_id"] == "seed-h20" and NO_BACKDOORS in cit["text"]
    assert body["answer"] == re.sub(r"\s*\[2\]", "", cit["text"]) + " " + cit["label"]


def test_the_chinese_seed_question_never_quotes_another_sentence(client: TestClient) -> None:
    # The model is unsure about this yes/no question in Chinese (XQuAD, which it learned from,
    # has no yes/no questions): it may decline, but it finds the right sentence and quotes nothing else.
    body = client.post("/v1/answer", json={"query": "英伟达的H20芯片有后门吗？"}).json()
    top = body["results"][0]
    assert top["article_id"] == "seed-h20" and NO_BACKDOORS in top["highlight"]["text"]
    assert all(NO_BACKDOORS in c["text"] for c in body["citations"])


def test_the_answers_labels_are_the_search_results_labels(client: TestClient) -> None:
    for query in ("英伟达的H20芯片有后门吗？", "Wie viel hat die neue Brücke über die Spree gekostet?"):
        answer = client.post("/v1/answer", json={"query": query, "top_k": 5}).json()
        search = client.post("/v1/search", json={"query": query, "top_k": 5}).json()
        assert [r["passage_id"] for r in answer["results"]] == [r["passage_id"] for r in search["results"]]
        assert [r["citation"] for r in search["results"]] == [f"[{i}]" for i in range(1, 6)]
        for cit in answer["citations"]:
            n = int(cit["label"].strip("[]"))
            listed = search["results"][n - 1]
            assert listed["citation"] == cit["label"] and listed["passage_id"] == cit["passage_id"]
            assert listed["char_start"] <= cit["char_start"] < cit["char_end"] <= listed["char_end"]
        assert {f"[{m}]" for m in LABEL.findall(answer["answer"])} == {
            c["label"] for c in answer["citations"]
        }


@pytest.mark.parametrize("query", ["英伟达的H20芯片有后门吗？", "Does NVIDIA's H20 chip have a backdoor?"])
def test_an_unrelated_sentence_close_by_cosine_does_not_join_the_answer(
    client: TestClient, query: str
) -> None:
    body = client.post("/v1/answer", json={"query": query}).json()
    assert all(c["article_id"] == "seed-h20" for c in body["citations"])
    assert "卫星" not in body["answer"]
    # Every other result, the civil-disobedience passages among them (their sentence about farmers
    # and a satellite station is as close to the Chinese question by cosine as the answer), is
    # read as not answering, or not read at all: never marked as an answer.
    others = [r for r in body["results"] if r["article_id"] != "seed-h20"]
    assert any(r["article_id"] == "zh-civil-disobedience" for r in others)
    assert all(not r["highlight"]["answers"] for r in others)
    assert any(r["highlight"]["probability"] is not None for r in others)  # the model read one


def test_a_question_nothing_answers_is_not_answered(client: TestClient) -> None:
    body = client.post("/v1/answer", json={"query": "特斯拉去年在中国卖了多少辆电动汽车？"}).json()
    assert body["answered"] is False and body["citations"] == []
    assert body["answer"] == NO_ANSWER["zh"]


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        ("NVIDIA losses export controls", "$5.5 billion"),
        ("英伟达 出口管制 损失", "$5.5 billion"),  # keywords in another language
        ("Spree Brücke Kosten", "Brücke"),
    ],
)
def test_a_keyword_query_gets_an_answer(client: TestClient, query: str, expect: str) -> None:
    body = client.post("/v1/answer", json={"query": query}).json()
    assert body["answered"], body
    assert expect in body["citations"][0]["text"]


def test_search_marks_the_answer_only_where_the_model_says_so(client: TestClient) -> None:
    body = client.post(
        "/v1/search", json={"query": "Does NVIDIA's H20 chip have a backdoor?", "top_k": 5}
    ).json()
    top, rest = body["results"][0], body["results"][1:]
    assert top["article_id"] == "seed-h20" and NO_BACKDOORS in top["highlight"]["text"]
    assert top["highlight"]["answers"] and top["highlight"]["probability"] >= 0.4
    # By default the model reads the first hit only: the others keep the sentence nearest by cosine,
    # with its cosine, and answer nothing.
    for r in rest:
        h = r["highlight"]
        assert h["probability"] is None and h["answers"] is False and h["score"] is not None


def test_the_highlight_is_the_sentence_the_model_prefers(client: TestClient, model: AnswerModel) -> None:
    body = client.post(
        "/v1/search", json={"query": "How much money could NVIDIA lose because of the export controls?"}
    ).json()
    top = body["results"][0]
    assert top["article_id"] == "seed-h20"
    assert "$5.5 billion" in top["highlight"]["text"] and top["highlight"]["answers"]
    # The probability shown is the model's own for that sentence, calibrated for English > English.
    text = top["highlight"]["text"]
    if text.count("[4].") == 1:  # one sentence (not two joined): the model can be asked directly
        logit = model.logits(
            "How much money could NVIDIA lose because of the export controls?",
            [text],
            [top["highlight"]["score"]],
        )
        got = model.calibrate(logit, "en", "en")
        assert float(got[0]) == pytest.approx(top["highlight"]["probability"], abs=1e-3)


def test_a_chat_follow_up_is_answered_as_if_asked_in_full(client: TestClient) -> None:
    messages = [
        {"role": "user", "content": "Does NVIDIA's H20 chip have a backdoor?"},
        {"role": "assistant", "content": "NVIDIA says its chips have no backdoors [1]."},
        {"role": "user", "content": "And how much money could they lose because of the export controls?"},
    ]
    body = client.post("/v1/chat/completions", json={"model": "citesearch", "messages": messages}).json()
    content = body["choices"][0]["message"]["content"]
    assert content.startswith(FRAME["en"]), content
    assert "$5.5 billion" in content and body["citations"]
    assert "$5.5 billion" in body["citations"][0]["text"]


def test_a_chat_answer_in_another_language_is_framed_in_the_users_language(client: TestClient) -> None:
    messages = [{"role": "user", "content": "英伟达因出口管制可能损失多少钱？"}]
    body = client.post("/v1/chat/completions", json={"model": "citesearch", "messages": messages}).json()
    content = body["choices"][0]["message"]["content"]
    assert content.startswith(FRAME["zh"]) and "$5.5 billion" in content  # the quote stays in English


def test_calibration_is_per_language_pair_and_monotone(model: AnswerModel) -> None:
    cal = model.config.calibration
    assert isinstance(cal, Calibration) and cal.pairs
    logits = np.linspace(-6, 6, 25, dtype=np.float32)
    for q, s in (("zh", "en"), ("en", "en"), ("de", "de"), ("xx", "yy")):
        p = cal.probabilities(logits, q, s)
        assert np.all(np.diff(p) > 0) and 0 < p[0] < p[-1] < 1
    assert 0.05 < model.threshold < 0.95


def test_stats_name_the_answer_engine(client: TestClient, model: AnswerModel) -> None:
    assert client.get("/v1/stats").json()["answer_engine"] == model.engine_name


def test_a_models_directory_without_the_answer_model_serves_by_cosine(
    embedder: Embedder, tmp_path: Path
) -> None:
    """A models directory prepared by an older release: `auto` serves without the answer model
    (highlights by cosine, none marked as answering); an engine asked for by name refuses to start."""
    settings = Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "old-models")
    assert settings.load_answer_model() is None
    with pytest.raises(ModelError):
        Settings(models_dir=tmp_path / "old-models", answer_model="openvino").load_answer_model()
    with TestClient(create_app(settings, embedder_factory=lambda _m: embedder)) as c:
        assert c.post("/v1/articles", json={"articles": articles()}).status_code == 200
        assert c.get("/v1/stats").json()["answer_engine"] is None
        hit = c.post("/v1/search", json={"query": "Does NVIDIA's H20 chip have a backdoor?"}).json()
        highlight = hit["results"][0]["highlight"]
        assert highlight["answers"] is False and highlight["probability"] is None
