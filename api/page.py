"""The search page: `/` and `/articles/{id}` rendered on the server (they work without JavaScript),
enhanced by one small script (`static/page.js`) for filters, paging, the answer, the key prompt and
the admin strip. No CDN and no build step: the templates and assets ship inside the package.

Browser pages answer HTML, errors included (a 404 page for an unknown article); the JSON API keeps
its JSON errors. Article text is untrusted: templates autoescape, the script only sets
`textContent`, and a Content-Security-Policy allows nothing but this server's own script and style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import ValidationError

from citesearch.api import presenters
from citesearch.api.deps import ReadAuth, StateDep, require_read
from citesearch.api.errors import ApiError, error_responses
from citesearch.api.schemas import SearchRequest, SearchResponse, SearchResult, Stats
from citesearch.api.state import AppState
from citesearch.index.articles import validate_article_id
from citesearch.index.errors import CitesearchError, NotFoundError
from citesearch.index.search import SearchQuery

_HERE = Path(__file__).resolve().parent
_STATIC = _HERE / "static"
_ASSETS = {
    "page.css": "text/css; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE_SIZE = 10
"""Results per page of the search page."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_LANG_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,4}")
_CHARS = re.compile(r"([0-9]{1,9})-([0-9]{1,9})")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,  # every variable is escaped: titles and texts come from whoever ingested them
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

router = APIRouter(include_in_schema=False)


# ---- pure helpers (shared in spirit with page.js, which does the same on the client) -------------


def span_url(article_id: str, start: int, end: int, answer: tuple[int, int] | None = None) -> str:
    """The page of an article with `[start, end)` highlighted (and inside it the sentence `answer`
    that answers, when given): the server reads `?chars=` (and `answer=`), the script the `#chars=`
    fragment (the form citations use), so the link works with and without JavaScript."""
    spans = f"chars={start}-{end}" + (f"&answer={answer[0]}-{answer[1]}" if answer else "")
    return f"/articles/{quote(article_id, safe='')}?{spans}#{spans}"


def split_span(text: str, start: int, end: int) -> tuple[str, str, str]:
    """`text` cut around `[start, end)` (code-point offsets, clamped); ("", "", text) when empty."""
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    if start >= end:
        return "", "", text
    return text[:start], text[start:end], text[end:]


def lang_attr(tag: str | None) -> str | None:
    """A language tag safe to put in `lang=` (BCP-47 shaped), else None."""
    return tag if tag and _LANG_TAG.fullmatch(tag) else None


def external_url(url: str | None) -> str | None:
    """The article's own link when it is http(s) (never `javascript:` or the like), else None."""
    if not url:
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def parse_chars(value: str | None) -> tuple[int, int] | None:
    """`START-END` as two ints, or None when absent or malformed."""
    m = _CHARS.fullmatch(value or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True)
class ResultView:
    """One result as the template shows it: the passage cut around its answer sentence."""

    rank: int
    citation: str
    title: str
    source: str | None
    date: str | None
    language: str
    lang: str | None
    before: str
    mark: str
    after: str
    answers: bool
    """`mark` answers the question (the answer model says so): shown marked; else the sentence
    nearest the question, shown plain with a dotted underline."""
    href: str
    url: str | None
    score: float


def result_view(r: SearchResult) -> ResultView:
    """The passage with the highlight sentence picked out (its article offsets made passage-relative)."""
    h = r.highlight
    before, mark, after = split_span(r.text, h.char_start - r.char_start, h.char_end - r.char_start)
    if not mark and h.text and h.text in r.text:  # offsets that do not fit: find the sentence instead
        i = r.text.index(h.text)
        before, mark, after = split_span(r.text, i, i + len(h.text))
    answer = (h.char_start, h.char_end) if h.answers and mark else None
    return ResultView(
        rank=r.rank,
        citation=r.citation,
        title=r.title or r.article_id,
        source=r.source,
        date=(r.published_at or "")[:10] or None,
        language=r.language,
        lang=lang_attr(r.language),
        before=before,
        mark=mark,
        after=after,
        answers=answer is not None,
        href=span_url(r.article_id, r.char_start, r.char_end, answer),
        url=external_url(r.url),
        score=r.score,
    )


# ---- form parameters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchForm:
    """What the search form holds, read leniently from the URL (a page never answers JSON 422)."""

    q: str
    language: str
    source: str
    published_after: str
    published_before: str
    offset: int

    @classmethod
    def from_request(cls, request: Request) -> SearchForm:
        """The form's fields from the query string; malformed dates and offsets are dropped."""
        p = request.query_params

        def day(name: str) -> str:
            value = p.get(name, "").strip()
            return value if _DAY.fullmatch(value) else ""

        offset = p.get("offset", "")
        return cls(
            q=p.get("q", ""),
            language=p.get("language", "").strip(),
            source=p.get("source", "").strip(),
            published_after=day("published_after"),
            published_before=day("published_before"),
            offset=min(int(offset), 1000) if offset.isdigit() and len(offset) < 6 else 0,
        )

    def request(self) -> SearchRequest:
        """The API request this form stands for; ValidationError when the question is not valid."""
        filters: dict[str, Any] = {"language": [self.language] if self.language else []}
        filters["source"] = [self.source] if self.source else []
        if self.published_after:
            filters["published_after"] = self.published_after
        if self.published_before:
            filters["published_before"] = self.published_before
        return SearchRequest.model_validate(
            {"query": self.q, "top_k": PAGE_SIZE, "offset": self.offset, "filters": filters}
        )

    def page_url(self, offset: int) -> str:
        """This search at another offset (the next-page link)."""
        fields = {
            "q": self.q,
            "language": self.language,
            "source": self.source,
            "published_after": self.published_after,
            "published_before": self.published_before,
        }
        params = {k: v for k, v in fields.items() if v}
        if offset:
            params["offset"] = str(offset)
        return "/?" + urlencode(params)


# ---- rendering ----------------------------------------------------------------------------------


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A template as an HTML response with the page security headers."""
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)


def _authorized(request: Request) -> bool:
    """Whether this request may read (a browser navigating never sends the bearer key: it gets the
    prompt, and the script asks the API with the key kept in sessionStorage)."""
    try:
        require_read(request)
    except ApiError:
        return False
    return True


def _stats(state: AppState) -> Stats | None:
    return presenters.stats(state.service.stats()) if state.service is not None else None


def _not_ready(state: AppState, page: str) -> HTMLResponse:
    why = "the service failed to start" if state.load_error else "the model and index are still loading"
    # page "loading": the script polls /readyz and reloads when the service is up.
    page = "loading" if state.load_error is None else "error"
    return render("error.html", 503, page=page, auth=False, title="Not ready", message=f"Not ready: {why}.")


def _run_search(state: AppState, req: SearchRequest) -> SearchResponse:
    assert state.service is not None
    query: SearchQuery = presenters.search_query(req)
    return presenters.search_response(req, state.service.search(query))


def _search_context(state: AppState, form: SearchForm) -> dict[str, Any]:
    """Results (or the reason there are none) for the form's question."""
    if not form.q.strip():
        return {}
    try:
        req = form.request()
    except ValidationError as exc:
        return {"problem": "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())}
    try:
        resp = _run_search(state, req)
    except CitesearchError as exc:
        return {"problem": str(exc)}
    return {
        "response": resp,
        "results": [result_view(r) for r in resp.results],
        "next_url": form.page_url(resp.next_offset) if resp.next_offset is not None else None,
        "prev_url": form.page_url(max(0, form.offset - PAGE_SIZE)) if form.offset else None,
    }


# ---- routes -------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def search_page(request: Request, state: StateDep) -> HTMLResponse:
    """The search page; `/?q=...` answers on the server, so a shared link shows its results at once."""
    form = SearchForm.from_request(request)
    if state.service is None:
        return _not_ready(state, "search")
    if not _authorized(request):
        return render("search.html", page="search", auth=True, form=form, stats=None)
    context = _search_context(state, form)
    status = 422 if "problem" in context else 200
    return render(
        "search.html",
        status,
        page="search",
        auth=False,
        form=form,
        stats=_stats(state),
        **context,
    )


@router.get("/articles/{article_id}", response_class=HTMLResponse)
def article_page(article_id: str, request: Request, state: StateDep) -> HTMLResponse:
    """An article with the cited span (`?chars=START-END`, or `#chars=` for the script) shaded and,
    inside it, the sentence that answers (`answer=START-END`) marked."""
    try:
        validate_article_id(article_id)
    except ValueError:
        return _missing(article_id)
    if state.service is None:
        return _not_ready(state, "article")
    if not _authorized(request):
        return render("article.html", page="article", auth=True, article_id=article_id, article=None)
    try:
        row, _ = state.service.get_article(article_id)
    except NotFoundError:
        return _missing(article_id)
    span = parse_chars(request.query_params.get("chars"))
    before, cited, after = split_span(row.text, *span) if span else ("", "", row.text)
    inner = parse_chars(request.query_params.get("answer"))
    lead, mark, tail = cited, "", ""
    if span and inner and span[0] <= inner[0] < inner[1] <= span[1]:
        lead, mark, tail = split_span(cited, inner[0] - span[0], inner[1] - span[0])
    return render(
        "article.html",
        page="article",
        auth=False,
        article_id=article_id,
        article=row,
        lang=lang_attr(row.language),
        url=external_url(row.url),
        date=(row.published_at or "")[:10] or None,
        before=before,
        cited=bool(cited),
        lead=lead,
        mark=mark,
        tail=tail,
        after=after,
    )


def _missing(article_id: str) -> HTMLResponse:
    return render(
        "error.html",
        404,
        page="error",
        auth=False,
        title="Article not found",
        message=f"There is no article with the id {article_id[:300]!r}.",
    )


@router.get("/ui/status", dependencies=[ReadAuth], responses=error_responses(401))
def ui_status(state: StateDep) -> dict[str, Any]:
    """The admin strip's data: corpus figures and the job running now, if any (one call to poll)."""
    job = state.jobs.active()
    stats = _stats(state)
    return {
        "stats": stats.model_dump() if stats else None,
        "job": presenters.job_out(job).model_dump() if job else None,
    }


@router.get("/static/{name}")
def static_asset(name: str) -> FileResponse:
    """The page's own script and style sheet (a fixed list: no path from the request reaches the disk)."""
    if name not in _ASSETS:
        raise ApiError(404, "not_found", "no such asset")
    return FileResponse(
        _STATIC / name,
        media_type=_ASSETS[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
