"""Article validation, id derivation, content hash, language tags and language identification."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import citesearch.index.errors
from citesearch.index.articles import (
    ID_PATTERN,
    Article,
    ArticleInput,
    build_article,
    derive_id,
    duplicate_id_problems,
    has_letter_or_digit,
    normalize_url,
)
from citesearch.index.errors import (
    CitesearchError,
    ConflictError,
    InvalidArticleError,
    ModelMismatchError,
    NotFoundError,
    SourceError,
)
from citesearch.index.language import (
    NEWS_LANGUAGES,
    detect_language,
    detect_query_language,
    normalize_language_tag,
    warm_up,
)

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~:@-!$&'()*+,;="
EN_TEXT = "The central bank raised interest rates again on Thursday, citing persistent inflation."


def build(**fields: Any) -> Article:
    """Validate fields as a caller would send them (JSON), then build the article."""
    return build_article(ArticleInput.model_validate_json(json.dumps(fields)))


def invalid_fields(exc: InvalidArticleError) -> set[str]:
    return {d["field"] for d in exc.details}


# ---- the input model --------------------------------------------------------------------------


def test_only_text_is_required_and_unknown_fields_are_refused() -> None:
    a = build(text=EN_TEXT)
    assert a.text == EN_TEXT and a.title is None and a.url is None and a.metadata == {}
    with pytest.raises(ValidationError, match="text"):
        ArticleInput.model_validate({"title": "no text"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ArticleInput.model_validate({"text": EN_TEXT, "body": "typo"})


@pytest.mark.parametrize(
    "fields",
    [
        {"text": 42},
        {"text": EN_TEXT, "title": 7},
        {"text": EN_TEXT, "id": 123},
        {"text": EN_TEXT, "url": ["https://example.com"]},
        {"text": EN_TEXT, "language": 1},
        {"text": EN_TEXT, "published_at": 20250101},
        {"text": EN_TEXT, "source": True},
    ],
)
def test_wrong_types_are_refused_not_coerced(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ArticleInput.model_validate_json(json.dumps(fields))
    with pytest.raises(ValidationError):
        ArticleInput.model_validate(fields)


def test_text_is_kept_exactly_and_title_and_source_are_stripped() -> None:
    text = "\n  Leading space, CRLF\r\nand trailing space.  \n"
    a = build(text=text, title="  A title \n", source="  wire ")
    assert a.text == text
    assert a.title == "A title" and a.source == "wire"
    assert build(text=EN_TEXT, title="   ").title is None


@pytest.mark.parametrize("text", ["", " ", "\n\t \u3000"])
def test_empty_or_blank_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidArticleError, match="empty") as exc:
        build_article(ArticleInput(text=text))
    assert invalid_fields(exc.value) == {"text"}


def test_text_size_limit_counts_utf8_bytes_and_is_configurable() -> None:
    assert build_article(ArticleInput(text="é" * 500), max_bytes=1000).text == "é" * 500
    with pytest.raises(InvalidArticleError, match="1001 bytes") as exc:
        build_article(ArticleInput(text="é" * 500 + "x"), max_bytes=1000)
    assert invalid_fields(exc.value) == {"text"}
    big = "a" * 1_000_001
    with pytest.raises(InvalidArticleError, match="over the limit of 1000000"):
        build_article(ArticleInput(text=big, language="en"))


def test_nul_and_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        ArticleInput(text="a\x00b")
    # json.loads (files) lets unpaired surrogates through; they cannot be stored as UTF-8.
    for fields in (
        {"text": "broken \ud800 text"},
        {"text": "x", "title": "\udc00"},
        {"text": "x", "metadata": {"k": "\ud800"}},
    ):
        with pytest.raises(ValidationError, match=r"surrogate|unicode"):
            ArticleInput.model_validate(fields)
    with pytest.raises(InvalidArticleError, match="surrogate"):
        build_article(ArticleInput.model_construct(text="broken \ud800 text", metadata={}))


# ---- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    ["a", "nvidia-h20", "xquad:en:Super_Bowl_50", "v1.2~draft@wire", "x" * 256, ".a", "..a", "...", "a.."],
)
def test_valid_ids_are_kept(good: str) -> None:
    assert build(text=EN_TEXT, id=good).id == good


@pytest.mark.parametrize("bad", ["", "a/b", "a b", "é", "x" * 257, ".", "..", "a?b", "a#b", "a%20b"])
def test_invalid_ids_are_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(ValidationError, match="letters, digits"):
        ArticleInput(id=bad, text=EN_TEXT)


@settings(max_examples=150)
@given(st.text(alphabet=ID_ALPHABET, min_size=1, max_size=256).filter(lambda s: s not in (".", "..")))
def test_any_id_from_the_alphabet_is_accepted(article_id: str) -> None:
    assert ArticleInput(id=article_id, text="x").id == article_id


@settings(max_examples=150)
@given(st.text(min_size=1, max_size=40).filter(lambda s: any(c not in ID_ALPHABET for c in s)))
def test_any_id_outside_the_alphabet_is_refused(article_id: str) -> None:
    with pytest.raises(ValidationError):
        ArticleInput(id=article_id, text="x")


def test_the_schema_pattern_is_the_validator_rule() -> None:
    schema = ArticleInput.model_json_schema()
    id_schema = next(s for s in schema["properties"]["id"]["anyOf"] if s.get("type") == "string")
    assert id_schema["pattern"] == ID_PATTERN and id_schema["maxLength"] == 256


def test_ids_are_derived_from_the_normalised_url() -> None:
    base = build(text=EN_TEXT, url="https://example.com/news/a").id
    assert base.startswith("url-") and len(base) == 20
    for same in (
        "HTTPS://EXAMPLE.com/news/a",
        "https://example.com/news/a/",
        "https://example.com:443/news/a#comments",
    ):
        assert build(text="other text", url=same).id == base
    assert build(text=EN_TEXT, url="https://example.com/news/A").id != base
    assert build(text=EN_TEXT, url="https://example.com/news/a?page=2").id != base
    assert normalize_url("HTTP://Example.COM:80/a/?q=1#x") == "http://example.com/a?q=1"


def test_ids_are_derived_from_the_content_without_a_url() -> None:
    a = build(text=EN_TEXT, title="Rates")
    assert a.id.startswith("sha-") and len(a.id) == 20
    assert build(text=EN_TEXT, title="Rates", source="other").id == a.id
    assert build(text=EN_TEXT, title="Rates again").id != a.id
    assert derive_id(url=None, title="a", text="bc") != derive_id(url=None, title="ab", text="c")


def test_a_given_id_wins_over_derivation() -> None:
    assert build(id="mine", text=EN_TEXT, url="https://example.com/x").id == "mine"


# ---- dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_value", "stored"),
    [
        ("2025-08-01", "2025-08-01"),
        ("2025-08-01T09:30:00+08:00", "2025-08-01T09:30:00+08:00"),
        ("2025-08-01T01:30:00Z", "2025-08-01T01:30:00+00:00"),
        ("2025-08-01t01:30:00.25z", "2025-08-01T01:30:00.250000+00:00"),
        ("2025-08-01T01:30:00.123456789-05:30", "2025-08-01T01:30:00.123456-05:30"),
        ("2024-02-29", "2024-02-29"),
    ],
)
def test_dates_and_aware_datetimes_are_stored_as_iso(given_value: str, stored: str) -> None:
    assert build(text=EN_TEXT, published_at=given_value).published_at == stored


def test_python_dates_and_datetimes_are_accepted() -> None:
    when = dt.datetime(2025, 8, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert build_article(ArticleInput(text=EN_TEXT, published_at=when)).published_at == when.isoformat()
    day = dt.date(2025, 8, 1)
    assert build_article(ArticleInput(text=EN_TEXT, published_at=day)).published_at == "2025-08-01"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("2024-02-30", "day is out of range"),
        ("2025-13-01", "month must be in 1..12"),
        ("2025-08-01T24:00:00Z", "hour must be in 0..23"),
        ("2025-08-01T09:30:00", "no time zone"),
        ("yesterday", "not an RFC 3339 date"),
        ("", "not an RFC 3339 date"),
        # ISO 8601 forms that RFC 3339 (the schema's formats) does not have: refused everywhere.
        ("20250801", "not an RFC 3339 date"),
        ("2025-W31-1", "not an RFC 3339 date"),
        ("2025W311", "not an RFC 3339 date"),
        ("2025-213", "not an RFC 3339 date"),
        ("20250801T093000+0800", "not an RFC 3339 date"),
        ("2025-08-01T09:30+08:00", "not an RFC 3339 date"),
        ("2025-08-01 09:30:00Z", "not an RFC 3339 date"),
        ("2025-08-01T09:30:00+0800", "not an RFC 3339 date"),
        (" 2025-08-01", "not an RFC 3339 date"),
        ("２０２５-08-01", "not an RFC 3339 date"),
    ],
)
def test_impossible_naive_or_garbage_dates_are_refused(bad: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ArticleInput(text=EN_TEXT, published_at=bad)


def test_naive_python_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError, match="no time zone"):
        ArticleInput(text=EN_TEXT, published_at=dt.datetime(2025, 8, 1, 9, 30))


# ---- metadata -----------------------------------------------------------------------------------


def test_flat_metadata_keeps_its_types() -> None:
    a = build(text=EN_TEXT, metadata={"section": "tech", "rank": 2, "score": 0.5, "paywalled": False})
    assert dict(a.metadata) == {"section": "tech", "rank": 2, "score": 0.5, "paywalled": False}
    assert isinstance(a.metadata["paywalled"], bool) and isinstance(a.metadata["rank"], int)
    with pytest.raises(TypeError):
        a.metadata["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"tags": ["a", "b"]}, "nested"),
        ({"author": {"name": "x"}}, "nested"),
        ({"author": None}, "null"),
        ({"": "x"}, "non-empty string"),
        ({f"k{i}": i for i in range(101)}, "at most 100"),
    ],
)
def test_nested_or_null_metadata_is_refused(metadata: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ArticleInput.model_validate_json(json.dumps({"text": EN_TEXT, "metadata": metadata}))


def test_non_finite_numbers_in_metadata_are_refused() -> None:
    with pytest.raises(ValidationError, match="finite"):
        ArticleInput.model_validate_json('{"text": "x", "metadata": {"x": 1e400}}')
    with pytest.raises(ValidationError, match="finite"):
        ArticleInput(text="x", metadata={"x": float("nan")})


# ---- content hash -------------------------------------------------------------------------------


def test_same_content_same_hash_and_any_change_changes_it() -> None:
    fields: dict[str, Any] = {
        "id": "a1",
        "title": "T",
        "text": EN_TEXT,
        "url": "https://example.com/a",
        "source": "wire",
        "published_at": "2025-08-01",
        "language": "en",
        "metadata": {"a": 1, "b": "x"},
    }
    first = build(**fields)
    assert build(**fields).content_hash == first.content_hash
    reordered = {**fields, "metadata": {"b": "x", "a": 1}}
    assert build(**reordered).content_hash == first.content_hash
    changes = {
        "title": "T2",
        "text": EN_TEXT + " ",
        "url": "https://example.com/b",
        "source": "other",
        "published_at": "2025-08-02",
        "language": "de",
        "metadata": {"a": 2, "b": "x"},
    }
    for key, value in changes.items():
        assert build(**{**fields, key: value}).content_hash != first.content_hash, key
    assert build(**{**fields, "metadata": {"a": True, "b": "x"}}).content_hash != first.content_hash


def test_rebuilding_from_the_stored_fields_gives_the_same_hash() -> None:
    a = build(text=EN_TEXT, url="https://example.com/a", published_at="2025-08-01T09:30:00+08:00")
    again = build_article(
        ArticleInput.model_validate(
            {
                "id": a.id,
                "title": a.title,
                "text": a.text,
                "url": a.url,
                "source": a.source,
                "published_at": a.published_at,
                "language": a.language,
                "metadata": dict(a.metadata),
            }
        )
    )
    assert again == a


def test_schema_documents_every_field_with_examples() -> None:
    schema = ArticleInput.model_json_schema()
    assert schema["required"] == ["text"] and schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
        assert prop.get("examples"), name
    for example in schema["examples"]:
        assert build(**example).id == example["id"]


# ---- errors -------------------------------------------------------------------------------------


def test_error_tree() -> None:
    for cls in (InvalidArticleError, SourceError, NotFoundError, ConflictError, ModelMismatchError):
        assert issubclass(cls, CitesearchError)
    err = InvalidArticleError("bad", details=[{"field": "text", "message": "empty"}])
    assert str(err) == "bad" and err.details == [{"field": "text", "message": "empty"}]

    assert "CitesearchError" in (citesearch.index.errors.__doc__ or "")


def test_all_problems_are_reported_together() -> None:
    inp = ArticleInput.model_construct(text=" ", published_at="2024-02-30", language="??", metadata={})
    with pytest.raises(InvalidArticleError) as exc:
        build_article(inp)
    assert invalid_fields(exc.value) == {"text", "published_at", "language"}


# ---- language tags and identification -----------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("pt-br", "pt-BR"),
        ("pt_BR", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("sr-latn", "sr-Latn"),
        ("es-419", "es-419"),
        ("eng", "en"),
        ("zho", "zh"),
        ("iw", "he"),
        ("de-DE-1996", "de-DE-1996"),
        ("en-US-x-twain", "en-US-x-twain"),
        ("fil", "fil"),
    ],
)
def test_language_tags_are_normalised(tag: str, canonical: str) -> None:
    assert normalize_language_tag(tag) == canonical
    assert build(text=EN_TEXT, language=tag).language == canonical


@pytest.mark.parametrize("tag", ["", "e", "english", "en-", "en--us", "12", "zh_中文", "en-US-x", "a" * 36])
def test_garbage_language_tags_are_refused(tag: str) -> None:
    with pytest.raises(ValueError, match="BCP-47"):
        normalize_language_tag(tag)
    with pytest.raises(ValidationError):
        ArticleInput(text=EN_TEXT, language=tag)


SAMPLES = {
    "en": EN_TEXT,
    "de": "Die Zentralbank hat am Donnerstag die Zinsen erneut angehoben und verwies auf die Inflation.",
    "zh": "中央银行周四再次加息，理由是通货膨胀持续存在。",
    "ar": "رفع البنك المركزي أسعار الفائدة مرة أخرى يوم الخميس، مشيراً إلى استمرار التضخم.",
    "ru": "Центральный банк в четверг снова повысил процентные ставки, сославшись на инфляцию.",
    "th": "ธนาคารกลางขึ้นอัตราดอกเบี้ยอีกครั้งเมื่อวันพฤหัสบดี โดยอ้างถึงเงินเฟ้อที่ยังคงอยู่",
    "hi": "केंद्रीय बैंक ने गुरुवार को लगातार मुद्रास्फीति का हवाला देते हुए फिर से ब्याज दरें बढ़ाईं।",
    "ja": "中央銀行は木曜日、インフレが続いていることを理由に再び利上げを行った。",
    "ko": "중앙은행은 목요일 지속적인 인플레이션을 이유로 다시 금리를 인상했다.",
    "es": "El banco central volvió a subir los tipos de interés el jueves, citando la inflación persistente.",
    "el": "Η κεντρική τράπεζα αύξησε ξανά τα επιτόκια την Πέμπτη, επικαλούμενη τον επίμονο πληθωρισμό.",
    "tr": "Merkez bankası, süregelen enflasyonu gerekçe göstererek perşembe günü faizleri yeniden artırdı.",
    "vi": "Ngân hàng trung ương lại tăng lãi suất vào thứ Năm, với lý do lạm phát dai dẳng.",
}


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_absent_language_is_detected(lang: str) -> None:
    assert detect_language(SAMPLES[lang]) == lang
    assert build(text=SAMPLES[lang]).language == lang
    assert build(text=SAMPLES[lang], language="und").language == lang


def test_detection_is_unsure_without_letters() -> None:
    assert detect_language("12345 !!! 3.14") is None
    assert detect_query_language("42?") == (None, 0.0)
    assert build(text="2025 — 3:1").language is None


def test_detected_codes_are_news_languages() -> None:
    assert len(NEWS_LANGUAGES) >= 40 and len(set(NEWS_LANGUAGES)) == len(NEWS_LANGUAGES)
    for code in ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh", "ja", "ko"):
        assert code in NEWS_LANGUAGES
    for code in ("fr", "it", "pt", "nl", "pl", "uk", "fa", "he", "id"):
        assert code in NEWS_LANGUAGES


def test_query_language_with_and_without_candidates() -> None:
    assert detect_query_language("英伟达的H20芯片有后门吗？")[0] == "zh"
    assert detect_query_language("Sky Digital是什么时候推出的？")[0] == "zh"
    lang, conf = detect_query_language("Who won the Super Bowl in 2016?", ["en", "zh", "de"])
    assert lang == "en" and 0.5 < conf <= 1.0
    # A candidate is returned as the caller spelled it; a question in none of them gives None.
    assert detect_query_language("Quem ganhou o campeonato?", ["pt-BR", "zh"])[0] == "pt-BR"
    assert detect_query_language("英伟达的H20芯片有后门吗？", ["en", "de"]) == (None, 0.0)


def test_detection_is_thread_safe() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(detect_language, [SAMPLES[lang] for lang in sorted(SAMPLES)] * 4))
    assert found == sorted(SAMPLES) * 4


def test_query_language_is_fast() -> None:
    warm_up()
    questions = ["Who won the Super Bowl?", "英伟达的H20芯片有后门吗？", "Wer gewann den Super Bowl?"]
    timings = []
    for _ in range(30):
        for q in questions:
            t0 = time.perf_counter()
            detect_query_language(q, ["en", "zh", "de", "ar", "ru"])
            timings.append(time.perf_counter() - t0)
    assert statistics.median(timings) < 0.005


# ---- letters and digits, duplicates -------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["\u200b\u200c\u200d\u2060\ufeff", "🙂🙃🚀🇫🇷", "!!! ... ??? — «»", "\u3000\t \n", "\u0301\u0302"]
)
def test_text_without_a_letter_or_digit_is_refused(text: str) -> None:
    with pytest.raises(InvalidArticleError) as exc:
        build_article(ArticleInput(text=text))
    assert invalid_fields(exc.value) == {"text"}
    assert not has_letter_or_digit(text)


@pytest.mark.parametrize("text", ["٣", "Ⅻ", "½", "中", "a", "🙂 ok", "\u200bx"])
def test_any_letter_or_digit_of_any_script_is_enough(text: str) -> None:
    assert build_article(ArticleInput(text=text, language="en")).text == text


def test_duplicate_ids_are_named_with_both_positions() -> None:
    batch = [build(id="a", text=EN_TEXT), build(text=EN_TEXT), build(id="a", text="x1"), build(text=EN_TEXT)]
    assert duplicate_id_problems(batch) == [
        {"field": "id", "message": "duplicate id 'a' (also at index 0)", "index": 2},
        {"field": "id", "message": f"duplicate id {batch[1].id!r} (also at index 1)", "index": 3},
    ]
    assert duplicate_id_problems(batch[:2]) == []


# ---- the published JSON schema is exactly the rule ---------------------------------------------
# Clients (and schemathesis) read the patterns of ArticleInput's JSON schema: a value matching
# them must be accepted, and one that does not must be refused.

SCHEMA = ArticleInput.model_json_schema()


def schema_accepts(field: str, value: object) -> bool:
    return bool(jsonschema_rs.validator_for(SCHEMA["properties"][field]).is_valid(value))


def model_accepts(**fields: Any) -> bool:
    try:
        build(**{"text": EN_TEXT, **fields})
    except (ValidationError, InvalidArticleError):
        return False
    return True


SPACES = st.sampled_from(["", " ", "\t", "\n ", "\r", "\u3000", "\x0b", "\x1c", "\xa0"])
URLS = st.builds(
    "{}{}{}{}{}{}{}{}".format,
    SPACES,
    st.sampled_from(["http", "https", "HTTPS", "ftp", "", "http:", "hTtP"]),
    st.sampled_from(["://", ":/", "//", "://://"]),
    st.sampled_from(["", "user@", "u:p@", "a@b@", "[x]@"]),
    st.text(alphabet="aZ0.-_~%é中\u0301\u20fe /[]:@\x7f🙂", max_size=6),
    st.sampled_from(["", ":", ":80", ":65535", ":65536", ":0", ":x", ":00080", ":-1"]),
    st.text(alphabet='/?#aé %\x00\x85\u2028[]"<>', max_size=6),
    SPACES,
)


@settings(max_examples=400, deadline=None)
@given(URLS)
def test_the_url_pattern_is_the_url_rule(url: str) -> None:
    assert schema_accepts("url", url) == model_accepts(url=url), url


LANGUAGE_PARTS = st.text(alphabet="abcxX0123", min_size=0, max_size=9)
LANGUAGES = st.builds(
    "{}{}{}".format,
    SPACES,
    st.lists(LANGUAGE_PARTS, min_size=1, max_size=6).map(lambda parts: "-".join(parts)),
    SPACES,
) | st.text(max_size=8)


@settings(max_examples=400, deadline=None)
@given(LANGUAGES)
def test_the_language_pattern_is_the_language_rule(tag: str) -> None:
    assert schema_accepts("language", tag) == model_accepts(language=tag), tag


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ID_ALPHABET + "./ %é", min_size=0, max_size=4) | st.sampled_from([".", "..", "..."]))
def test_the_id_pattern_is_the_id_rule(article_id: str) -> None:
    assert schema_accepts("id", article_id) == model_accepts(id=article_id), article_id


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" \t\x1c\x85\u3000\u200ba\u2028\x00", min_size=0, max_size=4))
def test_the_metadata_key_pattern_is_the_key_rule(key: str) -> None:
    assert schema_accepts("metadata", {key: 1}) == model_accepts(metadata={key: 1}), key


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["title", "source", "metadata"]), st.text(alphabet="a \x00é", max_size=4))
def test_no_stored_string_may_hold_a_nul_and_the_schema_says_so(field: str, value: str) -> None:
    given_value: object = {"k": value} if field == "metadata" else value
    assert schema_accepts(field, given_value) == model_accepts(**{field: given_value}), (field, value)


# Characters assigned before Unicode 15 (unassigned to Python 3.11's unicodedata): the schema
# validator and the `regex` module may know different Unicode versions, and only agree on those.
@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(exclude_categories=["Cs", "Cn"]), max_size=5)
    | st.text(alphabet="a \x00", max_size=5)
)
def test_the_text_pattern_is_the_text_rule(text: str) -> None:
    assert schema_accepts("text", text) == model_accepts(text=text, language="en"), text


@pytest.mark.parametrize(
    "url",
    ['https://example.com/a"onmouseover="x', "https://example.com/<script>", "https://example.com/?q=a>b"],
)
def test_urls_with_a_quote_or_angle_brackets_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="percent-encode them"):
        build(text=EN_TEXT, url=url)
    assert build(text=EN_TEXT, url=url.replace('"', "%22").replace("<", "%3C").replace(">", "%3E")).url
