"""The MCP tools through the official MCP Python client: over stdio (`citesearch mcp`) and over
streamable HTTP at /mcp on a real uvicorn server, with the REST API's read key."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from citesearch.api.app import create_app
from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder
from citesearch.index.articles import ArticleInput
from citesearch.index.service import SearchService
from tests.chat_support import ROOT, articles, uvicorn_thread

READ_KEY = "r3ad-key-for-mcp-tests-0123"


@pytest.fixture(scope="module")
def data_dir(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the test articles (written, then closed for the server to open)."""
    path = tmp_path_factory.mktemp("mcp") / "d"
    service = SearchService(Settings(data_dir=path).index_config(), embedder)
    try:
        service.upsert([ArticleInput.model_validate(a) for a in articles()])
    finally:
        service.close()
    return path


@pytest.fixture(scope="module")
def http_server(embedder: Embedder, data_dir: Path) -> Iterator[str]:
    app = create_app(Settings(data_dir=data_dir, read_key=READ_KEY), embedder_factory=lambda _m: embedder)
    with uvicorn_thread(app) as base:
        yield base


def payload(result: CallToolResult) -> dict[str, Any]:
    """The structured content, checked equal to the JSON of the text block."""
    assert not result.is_error, result.content
    block = result.content[0]
    assert isinstance(block, TextContent)
    assert result.structured_content is not None
    structured: dict[str, Any] = result.structured_content
    assert json.loads(block.text) == structured
    return structured


async def exercise(session: ClientSession, base: str) -> None:
    """Tools listed, a cross-lingual search, a fetch of its first result, and an unknown id."""
    await session.initialize()
    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == {"search", "fetch"}
    assert {"query", "top_k", "language", "published_after"} <= set(
        tools["search"].input_schema["properties"]
    )

    found = payload(await session.call_tool("search", {"query": "英伟达的H20芯片有后门吗？", "top_k": 3}))
    first = found["results"][0]
    assert first["id"] == "seed-h20" and "backdoor" in first["text"]
    assert first["url"] == f"{base}/articles/seed-h20#chars={first['char_start']}-{first['char_end']}"
    assert all(r["url"] and r["title"] for r in found["results"])

    doc = payload(await session.call_tool("fetch", {"id": first["id"]}))
    assert doc["id"] == "seed-h20" and doc["title"] == "英伟达回应:没后门"
    assert doc["text"][first["char_start"] : first["char_end"]] == first["text"]
    assert doc["metadata"]["source"] == "seed" and doc["url"] == f"{base}/articles/seed-h20"

    dated = payload(
        await session.call_tool(
            "search", {"query": "metro closure", "language": ["es"], "published_after": "2026-07-01"}
        )
    )
    assert [r["id"] for r in dated["results"]] == ["es-metro-madrid"]
    assert dated["results"][0]["url"] == "https://example.org/es/metro-linea-12"

    for tool, args in [
        ("fetch", {"id": "no-such-article"}),
        ("fetch", {"id": "../../etc/passwd"}),
        ("search", {"query": "  "}),
        ("search", {"query": "x", "published_after": "yesterday"}),
    ]:
        bad = await session.call_tool(tool, args)
        assert bad.is_error, (tool, args)
        assert isinstance(bad.content[0], TextContent) and "/work" not in bad.content[0].text
    # The session survives the errors.
    assert payload(await session.call_tool("fetch", {"id": "de-spree-bruecke"}))["title"]


def test_mcp_over_stdio(data_dir: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "citesearch.api.cli", "mcp", "--data-dir", str(data_dir)],
        env={
            "PYTHONPATH": str(ROOT),
            "CITESEARCH_PUBLIC_URL": "https://news.example",
            "HOME": os.environ.get("HOME", "/root"),
        },
        cwd=str(ROOT),
    )

    async def run() -> None:
        with open(os.devnull, "w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await exercise(session, "https://news.example")

    anyio.run(run)


def test_mcp_over_streamable_http_with_the_read_key(http_server: str) -> None:
    async def run() -> None:
        headers = {"Authorization": f"Bearer {READ_KEY}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            streamable_http_client(f"{http_server}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await exercise(session, http_server)

    anyio.run(run)


def test_mcp_over_http_refuses_a_missing_key(http_server: str) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    r = httpx.post(f"{http_server}/mcp", json=init, headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
