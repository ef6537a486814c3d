"""The search page through the real app (`with TestClient(app)`, real model): server-rendered `/`,
`/?q=`, `/articles/{id}?chars=`, escaping of hostile article text, HTML errors, the read-key prompt.
The same pages in a real browser: tests/test_page_browser.py."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citesearch.api.app import create_app
from citesearch.api.jobs import JobRunner
from citesearch.api.page import CSP, result_view, span_url, split_span
from citesearch.api.schemas import HighlightOut, SearchResult
from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder
from citesearch.embeddings.progress import Progress

SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_cb51183e942cda20.txt"
KEY = "k3y-for-page-tests-0123456789"
HOSTILE = "<script>alert(1)</script>"
ARABIC_TEXT = (
    "افتتحت مصر المتحف المصري الكبير قرب أهرامات الجيزة في نوفمبر. "
    "ويضم المتحف أكثر من خمسين ألف قطعة أثرية، منها كنوز الملك توت عنخ آمون كاملة."
)
ARABIC_QUESTION = "ماذا يضم المتحف المصري الكبير؟"


def seed_article() -> dict[str, Any]:
    title, _, body = SEED.read_text(encoding="utf-8").partition("\n")
    return {"id": "nvidia-h20", "title": title, "text": body.strip(), "source": "seed news"}


def articles() -> list[dict[str, Any]]:
    return [
        seed_article(),
        {
            "id": "hostile(1)",
            "title": HOSTILE,
            "text": f'Quantum kittens {HOSTILE} <img src=x onerror="alert(2)"> purr loudly in Oslo.',
            "source": "<b>evil</b>",
            "language": "en",
        },
        {
            "id": "ar-1",
            "title": "افتتاح المتحف المصري الكبير",
            "text": ARABIC_TEXT,
            "language": "ar",
            "source": "arabic",
        },
    ]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("page") / "data")
    with TestClient(create_app(settings, embedder_factory=lambda _m: embedder)) as c:
        r = c.post("/v1/articles", json={"articles": articles()})
        assert r.status_code == 200, r.text
        yield c


def marked(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r"<mark[^>]*>(.*?)</mark>", page, re.S)]


def test_the_root_is_the_search_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    page = r.text
    assert '<input id="q" name="q" type="search"' in page and "autofocus" in page
    assert '<label for="q"' in page and 'src="/static/page.js"' in page
    assert "3 articles" in page  # the admin strip
    assert 'id="key-prompt" class="key-prompt" aria-labelledby="key-title" hidden' in page


def test_a_question_in_the_url_is_answered_on_the_server(client: TestClient) -> None:
    r = client.get("/", params={"q": "英伟达的H20芯片有后门吗？"})
    assert r.status_code == 200, r.text
    page = r.text
    first = page.split('<li class="result"')[1]
    assert "英伟达回应:没后门" in first and 'lang="en"' in first and 'dir="auto"' in first
    assert "[1]" in first and re.search(r'<span id="took" title="took_ms [0-9.]+">[0-9]+ ms</span>', page)
    # The answer model read the first result and chose its sentence; for this yes/no question in
    # Chinese it is not sure enough to say it answers, so the sentence is picked out, not marked.
    near = re.search(r'<span class="near"[^>]*>(.*?)</span>', first, re.S)
    chosen = html.unescape(near.group(1)) if near else marked(first)[0]
    assert 'do not contain any "backdoors"' in chosen and chosen in SEED.read_text(encoding="utf-8")
    link = re.search(r'class="span-link" href="([^"]+)"', first)
    assert link is not None and link.group(1).startswith("/articles/nvidia-h20?chars=0-")


def test_a_sentence_the_model_says_answers_is_marked_and_linked(client: TestClient) -> None:
    page = client.get("/", params={"q": "Does NVIDIA's H20 chip have a backdoor?"}).text
    first = page.split('<li class="result"')[1]
    (sentence,) = marked(first)
    assert 'do not contain any "backdoors"' in sentence
    assert '<mark class="answer" title="answers the question">' in first
    link = re.search(r'class="span-link" href="([^"]+)"', first)
    assert link is not None and "&amp;answer=" in link.group(1)
    # The other results show their nearest sentence unmarked: nothing says they answer.
    for other in page.split('<li class="result"')[2:]:
        assert marked(other) == [] and 'class="near"' in other


def test_filters_and_pages_are_plain_links(client: TestClient) -> None:
    page = client.get("/", params={"q": "museum", "language": "ar"}).text
    assert 'value="ar" selected' in page
    results = page.split('<ol id="results"')[1]
    assert "ar-1" in results and "nvidia-h20" not in results
    one = client.get("/", params={"q": "chips"}).text
    assert 'id="next-page"' not in one  # three articles: one page
    bad = client.get("/", params={"q": "???", "offset": "x", "published_after": "nope"})
    assert bad.status_code == 422 and "no letter or digit" in bad.text


def test_the_article_page_shades_the_cited_passage_and_marks_the_answer(client: TestClient) -> None:
    text = seed_article()["text"]
    start = text.index("NVIDIA's spokesperson")
    end = text.index("[2]", start) + 3
    passage_end = text.index("protection [2].") + len("protection [2].")
    r = client.get(span_url("nvidia-h20", 0, passage_end, (start, end)).split("#")[0])
    assert r.status_code == 200 and r.headers["content-security-policy"] == CSP
    assert marked(r.text) == [text[start:end]]  # the sentence, not the whole passage
    cited = re.search(r'<span id="cited" class="cited" tabindex="-1">(.*?)</span>', r.text, re.S)
    assert cited is not None
    assert html.unescape(re.sub(r"</?mark[^>]*>", "", cited.group(1))) == text[:passage_end]
    whole = re.search(r'<div id="article-text"[^>]*>(.*?)</div>', r.text, re.S)
    assert whole is not None and html.unescape(re.sub(r"</?(mark|span)[^>]*>", "", whole.group(1))) == text
    # Without an answer the passage is shaded and nothing is marked; junk marks nothing at all.
    passage_only = client.get(span_url("nvidia-h20", 0, passage_end).split("#")[0]).text
    assert marked(passage_only) == [] and 'id="cited"' in passage_only
    outside = client.get(f"/articles/nvidia-h20?chars=0-10&answer={start}-{end}").text
    assert marked(outside) == []  # an answer outside the cited passage is ignored
    plain = client.get("/articles/nvidia-h20?chars=junk")
    assert plain.status_code == 200 and marked(plain.text) == [] and 'id="cited"' not in plain.text


def test_hostile_article_text_is_escaped_everywhere(client: TestClient) -> None:
    search = client.get("/", params={"q": "quantum kittens purr"}).text
    article = client.get("/articles/hostile(1)?chars=0-20").text
    for page in (search, article):
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>evil" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "/articles/hostile%281%29?chars=" in search
    reflected = client.get("/", params={"q": f'"><svg onload=alert(3)> {HOSTILE}'}).text
    assert "<svg" not in reflected and "<script>alert" not in reflected


def test_an_arabic_article_is_marked_right_to_left_capable(client: TestClient) -> None:
    page = client.get("/", params={"q": ARABIC_QUESTION}).text
    first = page.split('<li class="result"')[1]
    assert 'class="passage" dir="auto" lang="ar"' in first
    article = client.get("/articles/ar-1").text
    assert 'lang="ar"' in article and 'id="article-text" class="article-text" dir="auto"' in article


def test_an_unknown_article_is_an_html_404_and_the_json_api_keeps_json(client: TestClient) -> None:
    for path in ("/articles/nope", "/articles/a%20b", "/articles/%3Cb%3E"):
        r = client.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
        assert "Article not found" in r.text and "<b>" not in r.text
    api = client.get("/v1/articles/nope")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    assert client.get("/v1/nothing-here").json()["error"]["code"] == "not_found"


def test_static_assets_and_the_status_poll(client: TestClient) -> None:
    js = client.get("/static/page.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js.text.replace("never innerHTML", "")
    assert client.get("/static/page.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/..%2Fpage.py").status_code == 404
    assert client.get("/static/app.py").status_code == 404
    status = client.get("/ui/status").json()
    assert status["stats"]["articles"] == 3 and status["job"] is None


def test_the_status_poll_reports_a_running_reindex(client: TestClient) -> None:
    jobs: JobRunner = client.app.state.citesearch.jobs  # type: ignore[attr-defined]
    release = threading.Event()

    def work(progress: Progress) -> None:
        progress(0.25, "embedding")
        release.wait(60)

    job = jobs.submit_exclusive("reindex", work)
    try:
        seen: dict[str, Any] | None = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = client.get("/ui/status").json()["job"]
            if seen is not None and seen["progress"] == 0.25:
                break
        assert seen is not None and seen["job_id"] == job.id and seen["status"] == "running"
        assert seen["message"] == "embedding"
    finally:
        release.set()
        job.done.wait(60)
    assert client.get("/ui/status").json()["job"] is None


def test_while_loading_the_pages_say_so_and_wait(tmp_path: Path, embedder: Embedder) -> None:
    release = threading.Event()

    def slow_model(_model: str | None) -> Embedder:
        release.wait(60)
        return embedder

    app = create_app(
        Settings(data_dir=tmp_path / "data"), embedder_factory=slow_model, load_in_background=True
    )
    with TestClient(app) as c:
        for path in ("/?q=H20", "/articles/nvidia-h20"):
            r = c.get(path)
            assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
            assert 'data-page="loading"' in r.text and "still loading" in r.text
        release.set()
        assert app.state.citesearch.ready.wait(60)
        assert c.get("/").status_code == 200


def test_with_a_read_key_the_pages_ask_for_it(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path / "data", read_key=KEY)
    with TestClient(create_app(settings, embedder_factory=lambda _m: embedder)) as c:
        auth = {"Authorization": f"Bearer {KEY}"}
        assert c.post("/v1/articles", json={"articles": [seed_article()]}, headers=auth).status_code == 200
        page = c.get("/", params={"q": "H20 backdoor"})
        assert page.status_code == 200 and 'data-auth="required"' in page.text
        assert 'id="key-prompt" class="key-prompt" aria-labelledby="key-title">' in page.text
        assert "<mark" not in page.text and "英伟达回应" not in page.text and "articles ·" not in page.text
        article = c.get("/articles/nvidia-h20")
        assert article.status_code == 200 and "NVIDIA" not in article.text
        assert c.get("/ui/status").status_code == 401
        with_key = c.get("/", params={"q": "H20 backdoor"}, headers=auth)
        assert 'class="near"' in with_key.text and 'data-auth="open"' in with_key.text


def test_the_marked_sentence_comes_from_the_highlight_offsets() -> None:
    text = "Alpha one. Beta two. Gamma three."
    base = {
        "rank": 1,
        "score": 0.5,
        "passage_id": 1,
        "text": text,
        "article_id": "a/b",
        "title": None,
        "url": "javascript:alert(1)",
        "source": None,
        "published_at": "2025-08-01T09:30:00+08:00",
        "language": "en",
        "char_start": 100,
        "char_end": 100 + len(text),
        "citation": "[1]",
        "dense_score": None,
        "lexical_score": None,
    }
    view = result_view(
        SearchResult(**base, highlight=HighlightOut(text="Beta two.", char_start=111, char_end=120))
    )
    assert (view.before, view.mark, view.after) == ("Alpha one. ", "Beta two.", " Gamma three.")
    assert not view.answers and "answer=" not in view.href
    assert (
        view.url is None and view.date == "2025-08-01" and view.href.startswith("/articles/a%2Fb?chars=100-")
    )
    answering = result_view(
        SearchResult(
            **base,
            highlight=HighlightOut(
                text="Beta two.", char_start=111, char_end=120, probability=0.9, answers=True
            ),
        )
    )
    assert answering.answers and answering.href == (
        "/articles/a%2Fb?chars=100-133&answer=111-120#chars=100-133&answer=111-120"
    )
    moved = result_view(
        SearchResult(**base, highlight=HighlightOut(text="Gamma three.", char_start=0, char_end=5))
    )
    assert moved.mark == "Gamma three."
    assert split_span("😀ab", 1, 2) == ("😀", "a", "b") and split_span("abc", 2, 1) == ("", "", "abc")
