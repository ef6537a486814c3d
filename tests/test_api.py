"""Every route through the real app (`with TestClient(app)`, lifespan runs) with the real model."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citesearch.api.app import create_app
from citesearch.api.jobs import JobRunner
from citesearch.api.schemas import SearchRequest, query_limit
from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder, ModelError
from citesearch.index.articles import LANGUAGE_PATTERN
from citesearch.index.service import ServiceStats

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


def jobs_of(client: TestClient) -> JobRunner:
    runner: JobRunner = client.app.state.citesearch.jobs  # type: ignore[attr-defined]
    return runner


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
    assert set(stats) == {f.name for f in dataclasses.fields(ServiceStats)}


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
        client.post(
            "/v1/search", json={"query": question, "top_k": 1}
        ),  # the default: stored sentence vectors
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
    assert listing["next_cursor"] != "a3" and rest["next_cursor"] is None  # opaque, not the id


@pytest.mark.parametrize(
    "cursor",
    ["a3", "zz", "", "2", "2e", "2e2e", "2f", "6133 ", "6G", "61" * 257, "%00", "4A"],
)
def test_a_bad_cursor_is_a_422(client: TestClient, cursor: str) -> None:
    error = assert_error(client.get("/v1/articles", params={"cursor": cursor}), 422, "validation_error")
    assert ["query", "cursor"] in [d["loc"] for d in error["details"]]


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
        ("post", "/v1/articles", {"articles": [{"text": "ok", "published_at": "20250801"}]}, 422),
        ("post", "/v1/articles", {"articles": [{"text": "ok", "published_at": "2025-W31-1"}]}, 422),
        ("post", "/v1/search", {"query": "x", "filters": {"published_after": "2025-W31-1"}}, 422),
        ("get", "/v1/search?q=x&published_before=20250801", None, 422),
        ("get", "/v1/search?q=x&language=junk!!", None, 422),
        ("get", "/v1/search?q=x&language=en&language=english", None, 422),
        ("post", "/v1/search", {"query": "x", "filters": {"language": ["en", "zz-!"]}}, 422),
        ("post", "/v1/search", {"query": "x", "query_language": "not a tag"}, 422),
        ("post", "/v1/answer", {"query": "x", "filters": {"language": ["123"]}}, 422),
        ("post", "/v1/articles", {"articles": [{"text": "ok", "metadata": {"a": {"b": 1}}}]}, 422),
        ("post", "/v1/articles", {"articles": [{"text": "ok", "url": "ftp://x/y"}]}, 422),
        ("post", "/v1/articles", {"articles": [{"text": "ok", "language": "english"}]}, 422),
        ("post", "/v1/articles", {"articles": [{"id": "..", "text": "ok"}]}, 422),
        ("get", "/v1/search?q=", None, 422),
        ("get", "/v1/search?q=x&top_k=99", None, 422),
        ("get", "/v1/jobs/nope", None, 422),
        ("get", "/v1/jobs/" + "0" * 32, None, 404),
        ("get", "/v1/articles/a%20b", None, 422),
        ("get", "/v1/nothing-here", None, 404),
    ],
)
def test_bad_input_gets_a_4xx_in_the_one_error_shape(
    client: TestClient, method: str, path: str, payload: Any, status: int
) -> None:
    resp = client.request(method.upper(), path, json=payload)
    assert_error(resp, status)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/search", b"{not json"),
        ("/v1/search", b'{"query": "H20", "top_k": 3'),  # truncated
        ("/v1/search", b'{"query": "\xff\xfe H20"}'),  # not UTF-8
        ("/v1/search", b"\xff"),
        ("/v1/search", b""),  # empty
        ("/v1/search", b'[{"query": "H20"}]'),  # an array, not an object
        ("/v1/search", b'"H20"'),
        ("/v1/search", b"null"),
        ("/v1/articles", b'{"articles": [{"text": "x"}'),
        ("/v1/articles", b'[{"text": "x"}]'),
        ("/v1/articles", b"\xc3\x28"),
        ("/v1/articles", b""),
        ("/v1/reindex", b"[]"),
        ("/v1/reindex", b"{"),
        ("/v1/reindex", b"\x80"),
        ("/v1/search", b"[" * 100_000 + b"]" * 100_000),  # nested past the parser's depth
        ("/v1/articles", b'{"articles": ' + b"{" * 50_000 + b"}" * 50_000 + b"}"),
        ("/v1/chat/completions", b'{"messages": [' * 20_000 + b"]}" * 20_000),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400_malformed_json(
    client: TestClient, path: str, body: bytes
) -> None:
    resp = client.post(path, content=body, headers={"content-type": "application/json"})
    assert_error(resp, 400, "malformed_json")


def test_a_body_without_a_json_content_type_is_malformed_json(client: TestClient) -> None:
    resp = client.post("/v1/search", content=b'{"query": "H20"}', headers={"content-type": "text/plain"})
    assert "JSON object" in assert_error(resp, 400, "malformed_json")["message"]


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "H20", "top_k": "5"},
        {"query": "H20", "top_k": True},
        {"query": "H20", "offset": 1.5},
        {"query": "H20", "offset": "1"},
        {"query": "H20", "context": "yes"},
        {"query": "H20", "context": 1},
        {"query": "H20", "per_article": "2"},
        {"query": "H20", "recency_half_life_days": True},
        {"query": "H20", "recency_half_life_days": "30"},
    ],
)
def test_numbers_and_booleans_are_strict_in_json_bodies(client: TestClient, payload: dict[str, Any]) -> None:
    error = assert_error(client.post("/v1/search", json=payload), 422, "validation_error")
    field = next(k for k in payload if k != "query")
    assert ["body", field] in [d["loc"] for d in error["details"]]


def test_query_string_parameters_are_still_parsed_from_text(client: TestClient) -> None:
    params = {"q": "H20", "top_k": "2", "offset": "0", "context": "true"}
    assert client.get("/v1/search", params=params).status_code == 200
    # JSON Schema's integers include 2.0, so the body takes it too.
    assert client.post("/v1/search", json={"query": "H20", "top_k": 2.0}).status_code == 200


@pytest.mark.parametrize("day", [0, 20240101, "20240101", "2024-01-01T00:00:00", "2024-W01-1", True])
def test_filter_days_are_yyyy_mm_dd_only(client: TestClient, day: object) -> None:
    body = {"query": "H20", "filters": {"published_after": day}}
    assert_error(client.post("/v1/search", json=body), 422, "validation_error")
    if isinstance(day, str):
        assert_error(client.get("/v1/search", params={"q": "H20", "published_before": day}), 422)
    assert client.get("/v1/search", params={"q": "H20", "published_before": "2024-01-01"}).status_code == 200


def test_the_openapi_schema_states_the_configured_limits(tmp_path: Path, embedder: Embedder) -> None:
    with make_client(tmp_path, embedder, max_batch=3, max_query_chars=10) as c:
        spec = c.get("/openapi.json").json()
        assert_error(c.post("/v1/articles", json={"articles": [{"text": f"t{i}"} for i in range(4)]}), 422)
    schemas = spec["components"]["schemas"]
    assert schemas["ArticlesIn"]["properties"]["articles"]["maxItems"] == 3
    assert schemas["SearchRequest"]["properties"]["query"]["maxLength"] == 10
    q = next(p for p in spec["paths"]["/v1/search"]["get"]["parameters"] if p["name"] == "q")
    assert q["schema"]["maxLength"] == 10


@pytest.mark.parametrize("query", ["   ", "\u200b\u200d\ufeff", "🙂🚀", "?!… —", "\u200b🙂 \u2060"])
def test_a_question_without_a_letter_or_digit_is_refused_by_the_schema(
    client: TestClient, query: str
) -> None:
    for resp, loc in (
        (client.post("/v1/search", json={"query": query}), ["body", "query"]),
        (client.get("/v1/search", params={"q": query}), ["query", "q"]),
    ):
        error = assert_error(resp, 422, "validation_error")
        assert [d["loc"] for d in error["details"]] == [loc]
        assert (
            "blank" in error["details"][0]["message"] or "letter or digit" in error["details"][0]["message"]
        )
    assert client.post("/v1/search", json={"query": "٣"}).status_code == 200  # an Arabic-Indic digit is fine


def test_the_configured_query_limit_is_checked_by_the_schema(tmp_path: Path, embedder: Embedder) -> None:
    with make_client(tmp_path, embedder, max_query_chars=10) as c:
        assert c.post("/v1/search", json={"query": "x" * 10}).status_code == 200
        for resp in (
            c.post("/v1/search", json={"query": "x" * 11}),
            c.get("/v1/search", params={"q": "x" * 11}),
        ):
            error = assert_error(resp, 422, "validation_error")
            assert "longer than 10 characters" in error["details"][0]["message"]
    with query_limit(3), pytest.raises(ValueError, match="longer than 3"):
        SearchRequest(query="abcd")
    assert SearchRequest(query="abcd").query == "abcd"  # outside the block: the schema's 2000


@pytest.mark.parametrize(
    "text", ["\u200b\u200c\u200d", "🙂🙃🚀", "!!! ... ???", "\u3000 \t\n", "\u2060\ufe0f"]
)
def test_article_text_needs_a_letter_or_digit(client: TestClient, text: str) -> None:
    articles = [{"id": "fine", "text": "A fine article."}, {"id": "bad", "text": text}]
    error = assert_error(client.post("/v1/articles", json={"articles": articles}), 422, "invalid_article")
    assert [(d["field"], d["index"]) for d in error["details"]] == [("text", 1)]
    assert client.get("/v1/stats").json()["articles"] == 0


def test_an_id_twice_in_a_batch_is_refused_naming_both_positions(client: TestClient) -> None:
    articles = [
        {"id": "x", "text": "First copy."},
        {"id": "y", "text": "Another one."},
        {"text": "Derived from the url.", "url": "https://ex.com/a"},
        {"id": "x", "text": "Second copy."},
        {"text": "Same url, other text.", "url": "HTTPS://EX.com/a/"},
    ]
    error = assert_error(client.post("/v1/articles", json={"articles": articles}), 422, "invalid_article")
    assert error["details"][0] == {"field": "id", "message": "duplicate id 'x' (also at index 0)", "index": 3}
    assert error["details"][1]["index"] == 4 and "(also at index 2)" in error["details"][1]["message"]
    assert len(error["details"]) == 2
    assert client.get("/v1/stats").json()["articles"] == 0


def test_options_and_405_list_every_method_of_the_path(client: TestClient) -> None:
    for path, methods in (
        ("/v1/articles", {"GET", "POST", "OPTIONS"}),
        ("/v1/articles/some-id", {"GET", "DELETE", "OPTIONS"}),
        ("/v1/search", {"GET", "POST", "OPTIONS"}),
        ("/v1/reindex", {"POST", "OPTIONS"}),
        ("/mcp", {"GET", "POST", "DELETE", "OPTIONS"}),  # the MCP SDK's transport, behind the same rule
    ):
        resp = client.options(path)
        assert resp.status_code == 204, resp.text
        assert {m.strip() for m in resp.headers["allow"].split(",")} == methods
        put = client.put(path, json={})
        assert_error(put, 405, "method_not_allowed")
        assert {m.strip() for m in put.headers["allow"].split(",")} == methods
    assert client.options("/v1/nothing-here").status_code == 404


def test_openapi_declares_every_error_status_with_the_envelope(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    expected = {
        ("post", "/v1/search"): {"400", "401", "413", "422", "503"},
        ("get", "/v1/search"): {"401", "422", "503"},
        ("post", "/v1/articles"): {"400", "401", "413", "422", "503"},
        ("get", "/v1/articles"): {"401", "422", "503"},
        ("get", "/v1/articles/{article_id}"): {"401", "404", "422", "503"},
        ("delete", "/v1/articles/{article_id}"): {"401", "404", "422", "503"},
        ("post", "/v1/reindex"): {"400", "401", "409", "413", "422", "503"},
        ("get", "/v1/jobs/{job_id}"): {"401", "404", "422"},
        ("get", "/v1/stats"): {"401", "503"},
        ("get", "/readyz"): {"503"},
    }
    for (method, path), statuses in expected.items():
        responses = spec["paths"][path][method]["responses"]
        errors = {code for code in responses if code.startswith(("4", "5"))}
        assert errors == statuses, (method, path, errors)
        for code in errors:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, code)
    model = spec["components"]["schemas"]["ReindexRequest"]["properties"]["model"]
    assert {"type": "string", "enum": ["multilingual-e5-small"]} in model["anyOf"]


def test_body_limit_is_a_413(tmp_path: Path, embedder: Embedder) -> None:
    with make_client(tmp_path, embedder, max_body_bytes=2048) as c:
        resp = c.post("/v1/articles", json={"articles": [{"text": "x" * 5000}]})
        assert_error(resp, 413, "payload_too_large")


def test_article_over_the_size_limit_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    with make_client(tmp_path, embedder, max_article_bytes=100) as c:
        resp = c.post("/v1/articles", json={"articles": [{"text": "word " * 50}]})
        assert_error(resp, 422)
        assert c.get("/v1/stats").json()["articles"] == 0


def test_a_read_key_alone_guards_reads_and_writes(tmp_path: Path, embedder: Embedder) -> None:
    read = {"Authorization": f"Bearer {KEY}"}
    with make_client(tmp_path, embedder, read_key=KEY) as c:
        assert_error(c.post("/v1/articles", json={"articles": [seed_article()]}), 401, "unauthorized")
        assert_error(c.delete("/v1/articles/nvidia-h20"), 401, "unauthorized")
        assert_error(c.post("/v1/reindex"), 401, "unauthorized")
        assert_error(c.get("/v1/stats"), 401, "unauthorized")
        assert_error(c.post("/v1/search", json={"query": "H20"}), 401, "unauthorized")
        assert c.post("/v1/articles", json={"articles": [seed_article()]}, headers=read).status_code == 200
        assert c.post("/v1/search", json={"query": "H20"}, headers=read).status_code == 200
        assert c.delete("/v1/articles/nvidia-h20", headers=read).status_code == 204


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


@pytest.mark.parametrize(
    "key",
    [
        "changeme",
        "x" * 15,
        "a" * 16,  # the outside run's key: one letter repeated
        "Z" * 64,
        "abababababababab",
        "aaaaaaaaaaaaaaab",
        "changemechangeme",
        "secretsecretsecr",
        "abc123abc123abc1",
        "0123456701234567",
    ],
)
def test_placeholder_secrets_are_refused(key: str) -> None:
    for field in ("api_key", "read_key"):
        with pytest.raises(ValueError, match="not a placeholder"):
            Settings.model_validate({field: key})


def test_generated_keys_are_accepted() -> None:
    for key in (KEY, "0f3a9c2e7b14d685", secrets.token_hex(8), secrets.token_urlsafe(32), "aabbccddeeffgghh"):
        assert Settings(api_key=key, read_key=key).api_key == key


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
    job_obj = jobs_of(client).get(job_id)
    assert job_obj is not None and job_obj.done.wait(timeout=300)
    status = client.get(f"/v1/jobs/{job_id}").json()
    assert status["status"] == "succeeded" and status["progress"] == 1.0, status
    assert client.get("/v1/stats").json()["generation"] == 2
    assert client.post("/v1/search", json={"query": "H20"}).json()["generation"] == 2


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.post("/v1/search", json={"query": "H20"})
    text = client.get("/metrics").text
    assert 'citesearch_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert "citesearch_index_vectors" in text


@pytest.mark.parametrize(
    "model", ["../../etc", "/etc", "models/../x", "..", "nope", "x" * 129, ".hidden", ""]
)
def test_reindex_refuses_a_model_that_is_not_a_known_name(client: TestClient, model: str) -> None:
    error = assert_error(client.post("/v1/reindex", json={"model": model}), 422, "validation_error")
    models_dir = str(Settings().models_root().resolve())
    assert models_dir not in error["message"] and "multilingual-e5-small" in error["message"]
    assert jobs_of(client).active() is None


def test_reindex_with_a_model_of_the_models_directory(client: TestClient) -> None:
    client.post("/v1/articles", json={"articles": [seed_article()]})
    job_id = client.post("/v1/reindex", json={"model": "multilingual-e5-small"}).json()["job_id"]
    job = jobs_of(client).get(job_id)
    assert job is not None and job.done.wait(timeout=300)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"


def test_reindex_with_exactly_the_configured_model(tmp_path: Path, embedder: Embedder) -> None:
    asked: list[str | None] = []

    def factory(model: str | None) -> Embedder:
        asked.append(model)
        return embedder

    configured = "intfloat/multilingual-e5-small"
    settings = Settings(data_dir=tmp_path / "data", model=configured)
    with TestClient(create_app(settings, embedder_factory=factory)) as c:
        assert_error(c.post("/v1/reindex", json={"model": configured + "/"}), 422)
        job_id = c.post("/v1/reindex", json={"model": configured}).json()["job_id"]
        job = jobs_of(c).get(job_id)
        assert job is not None and job.done.wait(timeout=300) and job.status == "succeeded"
    assert asked == [configured, configured]


def test_a_failed_job_says_why_without_server_paths(tmp_path: Path, embedder: Embedder) -> None:
    models = tmp_path / "secret-models"
    (models / "broken").mkdir(parents=True)

    def factory(model: str | None) -> Embedder:
        if model is None:
            return embedder
        raise ModelError(f"cannot load embedding model {model!r}: config.json missing in {model}")

    settings = Settings(data_dir=tmp_path / "data", models_dir=models)
    with TestClient(create_app(settings, embedder_factory=factory)) as c:
        job_id = c.post("/v1/reindex", json={"model": "broken"}).json()["job_id"]
        job = jobs_of(c).get(job_id)
        assert job is not None and job.done.wait(timeout=60)
        body = c.get(f"/v1/jobs/{job_id}").json()
    assert body["status"] == "failed" and body["error"] == "model 'broken' could not be loaded"
    assert str(tmp_path) not in c.get(f"/v1/jobs/{job_id}").text


def test_a_start_up_failure_is_reported_without_server_paths(tmp_path: Path) -> None:
    secret = tmp_path / "secret" / "multilingual-e5-small"

    def factory(_model: str | None) -> Embedder:
        raise ModelError(f"the default embedding model is not prepared at {secret}")

    app = create_app(Settings(data_dir=tmp_path / "data"), embedder_factory=factory, load_in_background=True)
    with TestClient(app) as c:
        app.state.citesearch.ready.wait()
        for resp in (c.get("/readyz"), c.get("/v1/stats"), c.post("/v1/search", json={"query": "x"})):
            error = assert_error(resp, 503, "not_ready")
            assert "ModelError" in error["message"] and str(tmp_path) not in resp.text


def test_settings_pass_the_passage_cap_to_the_domain(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).index_config().max_article_passages == 256
    assert Settings(data_dir=tmp_path, max_article_passages=3).index_config().max_article_passages == 3


def test_language_filters_are_tags_in_any_case_or_a_422(client: TestClient) -> None:
    client.post("/v1/articles", json={"articles": [{**seed_article(), "language": "en"}]})
    for language in ("en", "EN", "eng"):
        hits = client.get("/v1/search", params={"q": "H20 backdoor", "language": language}).json()["results"]
        assert [h["article_id"] for h in hits] == ["nvidia-h20"], language
    assert client.get("/v1/search", params={"q": "H20 backdoor", "language": "de"}).json()["results"] == []
    error = assert_error(client.get("/v1/search", params={"q": "H20", "language": "<junk>"}), 422)
    assert error["details"][0]["loc"] == ["query", "language", "0"]
    schema = client.get("/openapi.json").json()
    [param] = [p for p in schema["paths"]["/v1/search"]["get"]["parameters"] if p["name"] == "language"]
    assert param["schema"]["items"]["pattern"] == LANGUAGE_PATTERN


def test_a_user_message_needs_its_content_as_the_schema_says(client: TestClient) -> None:
    def chat(*messages: dict[str, Any]) -> Any:
        return client.post("/v1/chat/completions", json={"model": "citesearch", "messages": list(messages)})

    for messages in (
        [{"role": "user"}],  # what schemathesis found valid by the schema and refused
        [{"role": "user", "content": None}],
        [{"role": "user"}, {"role": "assistant", "content": "?"}, {"role": "user", "content": "H20?"}],
    ):
        error = assert_error(chat(*messages), 422, "validation_error")
        assert "needs its content" in error["details"][0]["message"], error
    ok = chat(
        {"role": "user", "content": "Has the H20 a backdoor?"},
        {"role": "assistant", "content": None},  # an assistant's may be null, as in OpenAI's API
        {"role": "tool", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "And the chips of NVIDIA?"}]},
    )
    assert ok.status_code == 200, ok.text
    message = client.get("/openapi.json").json()["components"]["schemas"]["ChatMessage"]
    assert message["then"]["required"] == ["content"] and message["if"]["properties"]["role"] == {
        "const": "user"
    }
