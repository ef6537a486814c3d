"""Every route through the real app (`with TestClient(app)`, lifespan runs) with the real model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citesearch.api.app import create_app
from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder

SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_cb51183e942cda20.txt"
KEY = "k3y-for-tests-0123456789"


def seed_article() -> dict[str, Any]:
    title, _, body = SEED.read_text(encoding="utf-8").partition("\n")
    return {
        "id": "nvidia-h20",
        "title": title,
        "text": body.strip(),
        "source": "seed",
        "url": "https://ex.com/h20",
    }


def make_client(tmp_path: Path, embedder: Embedder, **overrides: Any) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", **overrides)
    return TestClient(create_app(settings, embedder_factory=lambda _m: embedder))


@pytest.fixture
def client(tmp_path: Path, embedder: Embedder) -> Iterator[TestClient]:
    with make_client(tmp_path, embedder) as c:
        yield c


def assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["details"], list)
    if code is not None:
        assert body["error"]["code"] == code
    return dict(body["error"])


def test_health_ready_and_empty_stats(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    stats = client.get("/v1/stats").json()
    assert stats["articles"] == 0 and stats["index_vectors"] == 0 and stats["generation"] == 1


def test_ingest_search_get_list_delete(client: TestClient) -> None:
    r = client.post("/v1/articles", json={"articles": [seed_article()]})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["status"] == "created"
    again = client.post("/v1/articles", json={"articles": [seed_article()]}).json()
    assert again["results"][0]["status"] == "unchanged"

    res = client.post("/v1/search", json={"query": "英伟达的H20芯片有后门吗？", "top_k": 3})
    assert res.status_code == 200, res.text
    body = res.json()
    top = body["results"][0]
    assert top["article_id"] == "nvidia-h20" and top["rank"] == 1 and top["citation"] == "[1]"
    art = client.get("/v1/articles/nvidia-h20").json()
    assert art["text"][top["char_start"] : top["char_end"]] == top["text"]
    hl = top["highlight"]
    assert art["text"][hl["char_start"] : hl["char_end"]] == hl["text"]
    assert all(art["text"][p["char_start"] : p["char_end"]] == p["text"] for p in art["passages"])

    got = client.get("/v1/search", params={"q": "H20 backdoor", "top_k": 2}).json()
    assert got["results"][0]["article_id"] == "nvidia-h20"

    listing = client.get("/v1/articles", params={"limit": 10}).json()
    assert [a["id"] for a in listing["articles"]] == ["nvidia-h20"] and listing["next_cursor"] is None

    assert client.delete("/v1/articles/nvidia-h20").status_code == 204
    assert client.post("/v1/search", json={"query": "H20"}).json()["results"] == []
    assert_error(client.delete("/v1/articles/nvidia-h20"), 404, "not_found")
    assert_error(client.get("/v1/articles/nvidia-h20"), 404, "not_found")


def test_semantic_highlight_picks_the_answering_sentence_across_languages(client: TestClient) -> None:
    client.post("/v1/articles", json={"articles": [seed_article()]})
    question = "英伟达的H20芯片有后门吗？"  # does NVIDIA's H20 have a backdoor?
    for res in (
        client.post("/v1/search", json={"query": question, "top_k": 1, "highlight": "semantic"}),
        client.get("/v1/search", params={"q": question, "top_k": 1, "highlight": "semantic"}),
    ):
        assert res.status_code == 200, res.text
        top = res.json()["results"][0]
        assert "backdoors" in top["highlight"]["text"]
        art = client.get("/v1/articles/nvidia-h20").json()
        hl = top["highlight"]
        assert art["text"][hl["char_start"] : hl["char_end"]] == hl["text"]
    assert_error(client.post("/v1/search", json={"query": question, "highlight": "best"}), 422)


def test_context_block_for_chatbots(client: TestClient) -> None:
    client.post("/v1/articles", json={"articles": [seed_article()]})
    body = client.post("/v1/search", json={"query": "H20 export controls", "context": True}).json()
    assert body["context"].startswith("[1] ")
    assert body["citations"][0]["label"] == "[1]"
    assert body["citations"][0]["article_id"] == "nvidia-h20"


def test_pagination_is_stable(client: TestClient) -> None:
    arts = [
        {
            "id": f"a{i}",
            "text": f"Article number {i} talks about chips and exports, topic {i}.",
            "language": "en",
        }
        for i in range(6)
    ]
    client.post("/v1/articles", json={"articles": arts})
    page1 = client.post("/v1/search", json={"query": "chips exports", "top_k": 3}).json()
    page2 = client.post("/v1/search", json={"query": "chips exports", "top_k": 3, "offset": 3}).json()
    ids1 = [r["article_id"] for r in page1["results"]]
    ids2 = [r["article_id"] for r in page2["results"]]
    assert page1["next_offset"] == 3 and not set(ids1) & set(ids2)
    assert [r["rank"] for r in page2["results"]] == [4, 5, 6]
    whole = client.post("/v1/search", json={"query": "chips exports", "top_k": 6}).json()
    assert [r["article_id"] for r in whole["results"]] == ids1 + ids2
    listing = client.get("/v1/articles", params={"limit": 4}).json()
    rest = client.get("/v1/articles", params={"limit": 4, "cursor": listing["next_cursor"]}).json()
    assert [a["id"] for a in listing["articles"] + rest["articles"]] == [f"a{i}" for i in range(6)]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("post", "/v1/search", {"query": ""}, 422),
        ("post", "/v1/search", {"query": "x" * 2001}, 422),
        ("post", "/v1/search", {"query": "x", "top_k": 0}, 422),
        ("post", "/v1/search", {"query": "x", "top_k": 51}, 422),
        ("post", "/v1/search", {"query": "x", "mode": "magic"}, 422),
        ("post", "/v1/search", {"query": 5}, 422),
        ("post", "/v1/search", {"query": "x", "filters": {"published_after": "2024-02-30"}}, 422),
        ("post", "/v1/articles", {"articles": []}, 422),
        ("post", "/v1/articles", {"articles": [{"text": ""}]}, 422),
        ("post", "/v1/articles", {"articles": [{"text": 42}]}, 422),
        ("post", "/v1/articles", {"articles": [{"text": "ok", "published_at": "2024-13-01"}]}, 422),
        ("post", "/v1/articles", {"articles": [{"text": "ok", "metadata": {"a": {"b": 1}}}]}, 422),
        ("get", "/v1/search?q=", None, 422),
        ("get", "/v1/search?q=x&top_k=99", None, 422),
        ("get", "/v1/jobs/nope", None, 404),
        ("get", "/v1/nothing-here", None, 404),
    ],
)
def test_bad_input_gets_a_4xx_in_the_one_error_shape(
    client: TestClient, method: str, path: str, payload: Any, status: int
) -> None:
    resp = client.request(method.upper(), path, json=payload)
    assert_error(resp, status)


def test_malformed_json_is_a_400(client: TestClient) -> None:
    resp = client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(resp, 400, "malformed_json")


def test_body_limit_is_a_413(tmp_path: Path, embedder: Embedder) -> None:
    with make_client(tmp_path, embedder, max_body_bytes=2048) as c:
        resp = c.post("/v1/articles", json={"articles": [{"text": "x" * 5000}]})
        assert_error(resp, 413, "payload_too_large")


def test_article_over_the_size_limit_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    with make_client(tmp_path, embedder, max_article_bytes=100) as c:
        resp = c.post("/v1/articles", json={"articles": [{"text": "word " * 50}]})
        assert_error(resp, 422)
        assert c.get("/v1/stats").json()["articles"] == 0


def test_auth_on_writes_and_optionally_reads(tmp_path: Path, embedder: Embedder) -> None:
    with make_client(tmp_path, embedder, api_key=KEY) as c:
        assert_error(c.post("/v1/articles", json={"articles": [seed_article()]}), 401, "unauthorized")
        bad = {"Authorization": "Bearer wrong-key-wrong-key-123"}
        assert_error(c.delete("/v1/articles/x", headers=bad), 401)
        assert_error(c.post("/v1/reindex", headers=bad), 401)
        ok = {"Authorization": f"Bearer {KEY}"}
        assert c.post("/v1/articles", json={"articles": [seed_article()]}, headers=ok).status_code == 200
        assert c.post("/v1/search", json={"query": "H20"}).status_code == 200  # reads stay open
    with make_client(tmp_path, embedder, api_key=KEY, read_key=KEY[::-1]) as c:
        assert_error(c.post("/v1/search", json={"query": "H20"}), 401)
        assert c.get("/v1/stats", headers={"Authorization": f"Bearer {KEY[::-1]}"}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_placeholder_secrets_are_refused() -> None:
    with pytest.raises(ValueError):
        Settings(api_key="changeme")


def test_cors_for_browser_chatbots(tmp_path: Path, embedder: Embedder) -> None:
    with make_client(tmp_path, embedder, cors_origins=["https://chat.example"]) as c:
        resp = c.options(
            "/v1/search",
            headers={"Origin": "https://chat.example", "Access-Control-Request-Method": "POST"},
        )
        assert resp.headers["access-control-allow-origin"] == "https://chat.example"


def test_reindex_job_reports_progress_and_keeps_search_answering(client: TestClient) -> None:
    client.post("/v1/articles", json={"articles": [seed_article()]})
    job = client.post("/v1/reindex")
    assert job.status_code == 202
    job_id = job.json()["job_id"]
    assert client.post("/v1/search", json={"query": "H20"}).status_code == 200
    runner = client.app.state.citesearch.jobs  # type: ignore[attr-defined]
    assert runner.get(job_id).done.wait(timeout=300)
    status = client.get(f"/v1/jobs/{job_id}").json()
    assert status["status"] == "succeeded" and status["progress"] == 1.0, status
    assert client.get("/v1/stats").json()["generation"] == 2
    assert client.post("/v1/search", json={"query": "H20"}).json()["generation"] == 2


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.post("/v1/search", json={"query": "H20"})
    text = client.get("/metrics").text
    assert 'citesearch_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert "citesearch_index_vectors" in text
