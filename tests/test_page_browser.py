"""The search page in a real browser: Debian's Chromium driven by Playwright, against real
`citesearch serve` processes on loopback (real model, real index). Skipped, loudly, without Chromium
(`apt-get install chromium chromium-driver`; `.ci/run` installs it)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from citesearch.api.answer import clean_sentence
from tests.test_page import ARABIC_QUESTION, KEY, articles, seed_article

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
_WHY_NOT = None
if not os.access(CHROMIUM, os.X_OK):
    _WHY_NOT = f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
else:
    try:
        from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        _WHY_NOT = "playwright is not installed (pip install -c constraints.txt -e '.[dev]')"
if _WHY_NOT is not None:
    warnings.warn(f"BROWSER TESTS SKIPPED: {_WHY_NOT}", stacklevel=1)
    pytest.skip(f"BROWSER TESTS SKIPPED: {_WHY_NOT}", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
QUESTION_ZH = "英伟达的H20芯片有后门吗？"
QUESTION_EN = "Does NVIDIA's H20 chip have a backdoor?"
WAIT_MS = 30_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(data: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`citesearch serve` on a free loopback port, returned once its log says it is ready."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CITESEARCH_LOG_LEVEL": "info", **env_extra}
    cmd = [sys.executable, "-m", "citesearch.api.cli", "serve", "--data-dir", str(data), "--port", str(port)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:  # the server's own log lines, not a timer
        seen.append(line)
        if "citesearch ready" in "".join(seen) and "Uvicorn running" in "".join(seen):
            break
    else:
        raise AssertionError("server exited early:\n" + "".join(seen))
    threading.Thread(target=seen.extend, args=(proc.stderr,), daemon=True).start()
    return proc, f"http://127.0.0.1:{port}"


def _fillers() -> list[dict[str, Any]]:
    """Twelve short weather notes, so that a question about the weather has a second page."""
    towns = [
        "Bergen",
        "Tromsø",
        "Lyon",
        "Porto",
        "Graz",
        "Turku",
        "Cork",
        "Gent",
        "Split",
        "Brno",
        "Lund",
        "Pécs",
    ]
    return [
        {
            "id": f"weather-{i}",
            "title": f"Weather in {t}",
            "text": f"Heavy rain and strong wind hit {t} today.",
            "language": "en",
        }
        for i, t in enumerate(towns)
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An open server holding the seed, a hostile article, an Arabic one and twelve weather notes."""
    proc, base = _serve(tmp_path_factory.mktemp("page-browser") / "d", {})
    try:
        with httpx.Client(base_url=base, timeout=120) as http:
            r = http.post("/v1/articles", json={"articles": articles() + _fillers()})
            assert r.status_code == 200, r.text
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with CITESEARCH_READ_KEY set, holding the seed article."""
    proc, base = _serve(tmp_path_factory.mktemp("page-key") / "d", {"CITESEARCH_READ_KEY": KEY})
    try:
        with httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as http:
            assert http.post("/v1/articles", json={"articles": [seed_article()]}).status_code == 200
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab; fails the test on any script error or Content-Security-Policy violation."""
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    p = context.new_page()
    problems: list[str] = []
    p.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    p.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    p.set_default_timeout(WAIT_MS)
    yield p
    context.close()
    assert not problems, problems


def _dir(page: Page, selector: str) -> str:
    return str(page.locator(selector).first.evaluate("e => getComputedStyle(e).direction"))


def test_a_chinese_question_finds_the_english_passage_and_its_cited_span(server: str, page: Page) -> None:
    page.goto(server + "/")
    expect(page.locator("#q")).to_be_focused()  # autofocus
    page.keyboard.type(QUESTION_ZH)
    page.keyboard.press("Enter")
    first = page.locator("#results li.result").first
    expect(first.locator(".title-link")).to_have_text("英伟达回应:没后门")
    assert "q=" in page.url and "%E8%8B%B1" in page.url  # the question is in the URL
    expect(page.locator("#took")).to_have_text(re.compile(r"^[0-9]+ ms$"))
    passage = first.locator(".passage")
    expect(passage).to_have_attribute("lang", "en")
    # The answer model's sentence for this Chinese question (picked out; marked only if it is sure).
    chosen = passage.locator("mark.answer, .near").inner_text()
    text = seed_article()["text"]
    assert "H20" in chosen and chosen in text
    # The same question in English: the model says the sentence answers; it is marked, and the
    # server's /v1/answer quotes it.
    page.locator("#q").fill(QUESTION_EN)
    page.keyboard.press("Enter")
    first = page.locator("#results li.result").first
    sentence = first.locator(".passage mark.answer").inner_text()
    assert 'do not contain any "backdoors"' in sentence and sentence in text
    expect(page.locator("#answer-text")).to_contain_text(clean_sentence(sentence))
    expect(page.locator("#answer-mode")).to_have_text("Quoted from the sources below")
    first.locator(".span-link").click()
    page.wait_for_url("**/articles/nvidia-h20?chars=*&answer=*#chars=*&answer=*")
    cited = page.locator("#cited")
    expect(cited).to_be_in_viewport()
    spans = dict(part.split("=") for part in page.url.split("#")[1].split("&"))
    start, end = (int(x) for x in spans["chars"].split("-"))
    a_start, a_end = (int(x) for x in spans["answer"].split("-"))
    # The passage is shaded, the sentence that answers is marked inside it.
    assert cited.inner_text() == text[start:end]
    expect(cited.locator("mark.answer")).to_have_text(text[a_start:a_end])
    assert sentence == text[a_start:a_end]
    expect(page.locator("#span-note")).to_contain_text("the sentence that answers is marked")
    expect(page.locator("#article-title")).to_have_text("英伟达回应:没后门")


def test_the_fragment_alone_highlights_the_span(server: str, page: Page) -> None:
    text = seed_article()["text"]
    start = text.index("Group 3")
    page.goto(f"{server}/articles/nvidia-h20#chars={start}-{start + 40}")
    expect(page.locator("#cited")).to_have_text(text[start : start + 40])
    expect(page.locator("#cited")).to_be_in_viewport()
    assert page.locator("#cited mark").count() == 0
    page.evaluate("location.hash = '#chars=0-40&answer=10-20'")
    expect(page.locator("#cited")).to_have_text(text[:40])
    expect(page.locator("#cited mark.answer")).to_have_text(text[10:20])


def test_arabic_renders_right_to_left(server: str, page: Page) -> None:
    page.goto(server + "/?q=" + ARABIC_QUESTION)
    first = page.locator("#results li.result").first
    expect(first.locator(".passage")).to_have_attribute("lang", "ar")
    assert _dir(page, "#results li.result .passage") == "rtl"
    assert _dir(page, "#results li.result .title-link") == "rtl"
    assert _dir(page, "#q") == "rtl"  # the question box follows what is typed
    assert _dir(page, ".meta") == "ltr"
    first.locator(".title-link").click()
    expect(page.locator("#article-text")).to_contain_text("المتحف")
    assert _dir(page, "#article-text") == "rtl"


def test_without_javascript_results_and_spans_are_rendered_by_the_server(
    server: str, browser: Browser
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(server + "/?q=" + QUESTION_ZH)
        first = page.locator("#results li.result").first
        expect(first.locator(".title-link")).to_have_text("英伟达回应:没后门")
        sentence = first.locator(".passage mark.answer, .passage .near").inner_text()
        assert "H20" in sentence
        first.locator(".span-link").click()
        expect(page.locator("#cited")).to_contain_text(sentence)  # the cited passage holds it
        page.goto(server + "/?q=weather&language=en")
        page.locator("#next-page").click()  # a plain link: the server renders page two
        expect(page.locator("#results li.result").first.locator(".rank")).to_have_text("#11")
    finally:
        context.close()


def test_filters_and_the_next_page_without_reloading(server: str, page: Page) -> None:
    page.goto(server + "/?q=heavy rain and wind")
    expect(page.locator("#results li.result")).to_have_count(10)
    page.evaluate("window.__same_document = true")
    page.locator("#next-page").click()
    expect(page.locator("#results li.result").first.locator(".rank")).to_have_text("#11")
    assert "offset=10" in page.url and page.evaluate("window.__same_document") is True
    page.go_back()
    expect(page.locator("#results li.result").first.locator(".rank")).to_have_text("#1")
    page.locator("#filters summary").click()
    page.locator("#f-language").select_option("ar")
    page.locator("#filters .apply").click()
    expect(page.locator("#results li.result")).to_have_count(1)
    expect(page.locator("#results .badge")).to_have_text("ar")
    assert "language=ar" in page.url and page.evaluate("window.__same_document") is True


def test_keyboard_only(server: str, page: Page) -> None:
    page.goto(server + "/")
    page.keyboard.type("H20 chip backdoor")
    page.keyboard.press("Enter")
    expect(page.locator("#results li.result").first).to_be_visible()
    for _ in range(40):  # Tab through the page until the first result's title link has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('title-link')"):
            break
    else:
        raise AssertionError("the first result cannot be reached with Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#cited")).to_be_in_viewport()
    expect(page.locator("#cited")).to_be_focused()


def test_the_answer_is_shown_when_the_server_has_one(server: str, page: Page) -> None:
    """/v1/answer comes from another change (issue 14): its response is stood in for at the network
    boundary, with hostile text, to test how the page shows it."""
    answer: dict[str, Any] = {
        "query": QUESTION_ZH,
        "answer": 'No backdoors <img src=x onerror="alert(1)"> [1].',
        "citations": [
            {
                "label": "[1]",
                "article_id": "nvidia-h20",
                "title": "英伟达回应:没后门",
                "url": None,
                "char_start": 10,
                "char_end": 40,
                "text": "x",
            }
        ],
        "mode": "extractive",
    }
    sent: list[Any] = []

    def answer_route(route: Route) -> None:
        sent.append(route.request.post_data_json)
        route.fulfill(json=answer)

    page.route("**/v1/answer", answer_route)
    page.goto(server + "/?q=" + QUESTION_ZH + "&language=en")
    expect(page.locator("#answer")).to_be_visible()
    expect(page.locator("#answer-text")).to_have_text(answer["answer"])
    assert page.locator("#answer img").count() == 0
    expect(page.locator("#answer-text a")).to_have_attribute(
        "href", "/articles/nvidia-h20?chars=10-40#chars=10-40"
    )


def test_a_no_answer_says_so_without_a_quoted_from_line(server: str, page: Page) -> None:
    page.goto(server + "/?q=" + "Who won the football world cup in 1998?")
    expect(page.locator("#answer")).to_be_visible()
    expect(page.locator("#answer-text")).to_have_text("The indexed articles do not answer this question.")
    expect(page.locator("#answer-mode")).to_be_hidden()
    assert page.locator("#answer-citations li").count() == 0


def test_the_admin_strip_and_a_phone_width_screen(server: str, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(server + "/?q=" + QUESTION_ZH)
        expect(page.locator("#admin-stats")).to_contain_text("15 articles")
        expect(page.locator("#admin-stats")).to_contain_text("multilingual-e5-small")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    finally:
        context.close()


def test_hostile_text_stays_text_in_the_browser(server: str, page: Page) -> None:
    page.goto(server + "/")
    page.keyboard.type("quantum kittens purr")
    page.keyboard.press("Enter")
    expect(page.locator("#results .title-link").first).to_have_text("<script>alert(1)</script>")
    assert page.locator("#results script, #results img, #results b").count() == 0


def test_a_late_refusal_of_an_older_key_keeps_the_key_entered_since(keyed_server: str, page: Page) -> None:
    """The wrong key's search is answered (401) only after the right key is in: that stale
    refusal must not wipe the new key nor ask for one again."""
    held: list[Route] = []

    def hold_first_search(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r".*/v1/search\?.*"), hold_first_search)
    page.goto(keyed_server + "/?q=" + QUESTION_ZH)
    expect(page.locator("#key-prompt")).to_be_visible()
    page.keyboard.type("wrong-key-0123456789")
    page.keyboard.press("Enter")
    expect(page.locator("#key-message")).to_contain_text("refused")  # /ui/status refused it
    page.keyboard.type(KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#results .title-link").first).to_have_text("英伟达回应:没后门")
    with page.expect_response(lambda r: "/v1/search" in r.url and r.status == 401):
        held[0].continue_()
    page.locator("#q").fill("H20 backdoor")  # a search after the stale refusal, with the key kept
    page.locator("#q").press("Enter")
    expect(page.locator("#results .title-link").first).to_have_text("英伟达回应:没后门")
    expect(page.locator("#key-prompt")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('citesearch.readKey')") == KEY


def test_a_read_key_is_asked_for_and_kept_for_the_session(keyed_server: str, page: Page) -> None:
    page.goto(keyed_server + "/?q=" + QUESTION_ZH)
    expect(page.locator("#key-prompt")).to_be_visible()
    expect(page.locator("#key")).to_be_focused()
    assert page.locator("#results li").count() == 0
    page.keyboard.type("wrong-key-0123456789")
    page.keyboard.press("Enter")
    expect(page.locator("#key-message")).to_contain_text("refused")
    page.keyboard.type(KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#key-prompt")).to_be_hidden()
    expect(page.locator("#results .title-link").first).to_have_text("英伟达回应:没后门")
    expect(page.locator("#admin-stats")).to_contain_text("1 articles")
    assert page.evaluate("sessionStorage.getItem('citesearch.readKey')") == KEY
    page.locator("#results .span-link").first.click()
    expect(page.locator("#cited")).to_contain_text("Core Viewpoint")  # fetched with the key
    page.go_back()
    expect(page.locator("#results .title-link").first).to_have_text("英伟达回应:没后门")
