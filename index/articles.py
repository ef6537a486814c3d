"""The Article domain model: what callers send, how it is validated, identified and hashed.

Decisions:
- Types are strict: a number is never silently turned into text (pydantic StrictStr), metadata is
  flat (string, integer, finite float or boolean values; nested values and null are refused).
- `published_at` is an RFC 3339 date ("2025-08-01") or date-time with its offset
  ("2025-08-01T09:30:00+08:00", "2025-08-01T01:30:00Z"), what the JSON schema's formats say, and
  nothing else of ISO 8601 (no "20250801", "2025-W31-1", "2025-08-01 09:30:00Z" or
  "2025-08-01T09:30Z"); naive datetimes are refused (their instant is unknowable), as are
  impossible dates such as 2024-02-30. It is stored as its ISO string, offset kept as given.
- Ids are 1-256 characters from RFC 3986 path characters: letters, digits and ._~:@-!$&'()*+,;=
  (no "/", "%", "?", "#" or spaces; not "." or ".."), so that every id
  can be used as is in `GET /v1/articles/{id}`. Absent ids are derived: `url-<16 hex>` from the
  normalised URL (scheme and host lower-cased, default port, fragment and trailing slash
  dropped), else `sha-<16 hex>` from the title and text. One batch may not name an id twice
  (`duplicate_id_problems`, on the final ids, derived ones included).
- The text is kept exactly as given (passages cite offsets into it); it must contain a letter or
  a digit (Unicode categories L or N: text of only spaces, punctuation, emoji or invisible
  characters is refused), no NUL or unpaired surrogate, and at most `max_bytes` bytes of UTF-8.
  Title and source are stripped of surrounding whitespace; empty ones become None.
- A URL is an absolute http(s) URL without spaces, control characters or `"<>` (RFC 3986 has
  them percent-encoded only), with an ASCII or letter/digit host and a port of 0-65535
  (`URL_PATTERN`, which the JSON schema publishes as is).
- The language is normalised BCP-47 ("pt-BR", "zh"; the common shapes of `LANGUAGE_PATTERN`, up to 35
  characters); absent (or "und"), it is detected from the text and may stay None when the detector
  is unsure.
- Every pattern the JSON schema publishes is exactly the rule applied here, so a generated
  request that matches the schema is accepted and one that does not is refused.
- Format and type errors are raised by `ArticleInput` (pydantic ValidationError); the checks that
  depend on configuration or on the text as a whole by `build_article` (InvalidArticleError).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from citesearch.index.errors import InvalidArticleError
from citesearch.index.language import detect_language, normalize_language_tag

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ID_MAX_LENGTH",
    "ID_PATTERN",
    "LANGUAGE_PATTERN",
    "LETTER_OR_DIGIT_PATTERN",
    "NO_NUL_PATTERN",
    "TEXT_PATTERN",
    "URL_PATTERN",
    "Article",
    "ArticleInput",
    "MetadataValue",
    "build_article",
    "check_language_tag",
    "content_hash",
    "derive_id",
    "duplicate_id_problems",
    "has_letter_or_digit",
    "normalize_url",
    "validate_article_id",
]

_T = TypeVar("_T")
DEFAULT_MAX_BYTES = 1_000_000
ID_MAX_LENGTH = 256
_ID_CHAR = r"[A-Za-z0-9._~:@!$&'()*+,;=-]"
_ID_CHAR_NOT_DOT = r"[A-Za-z0-9_~:@!$&'()*+,;=-]"
# 1-256 id characters, except "." and ".." (spelled out: the schema's regex dialects lack lookahead).
ID_PATTERN = (
    rf"^(?:{_ID_CHAR_NOT_DOT}{_ID_CHAR}{{0,255}}|\.{_ID_CHAR_NOT_DOT}{_ID_CHAR}{{0,254}}"
    rf"|\.\.{_ID_CHAR}{{1,254}})$"
)
_ID_RE = re.compile(ID_PATTERN)
LETTER_OR_DIGIT_PATTERN = r"[\p{L}\p{N}]"
"""Somewhere in the string, a letter or a digit (Unicode categories L and N)."""
_LETTER_OR_DIGIT = regex.compile(LETTER_OR_DIGIT_PATTERN)
NO_NUL_PATTERN = r"^[^\x00]*$"
"""A string that can be stored: no NUL character (PostgreSQL's text cannot hold one)."""
TEXT_PATTERN = rf"^[^\x00]*{LETTER_OR_DIGIT_PATTERN}[^\x00]*$"
"""An article's text: a letter or a digit somewhere, and no NUL anywhere."""
# Whitespace allowed around a URL or a language tag (and stripped); none inside.
_EDGE_SPACE = r"[ \t\n\r]*"
# A URL character: anything but controls, Unicode white space and the quote and angle brackets
# (never raw in a URL, RFC 3986; they would end an HTML attribute or a Markdown link around it).
_URL_CHAR = r'[^\x00-\x20"<>\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]'
_PORT = r"(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
URL_PATTERN = (
    rf"^{_EDGE_SPACE}(?:[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9._~!$&'()*+,;=%:-]*@)?"
    rf"[\p{{L}}\p{{N}}._~!$&'()*+,;=%-]+(?::{_PORT})?(?:[/?#]{_URL_CHAR}*)?{_EDGE_SPACE})?$"
)
_URL_RE = regex.compile(URL_PATTERN)
_SEP = "[-_]"
LANGUAGE_PATTERN = (
    rf"^{_EDGE_SPACE}(?:[A-Za-z]{{2,3}}(?:{_SEP}[A-Za-z]{{3}})?(?:{_SEP}[A-Za-z]{{4}})?"
    rf"(?:{_SEP}(?:[A-Za-z]{{2}}|[0-9]{{3}}))?(?:{_SEP}(?:[A-Za-z0-9]{{5,8}}|[0-9][A-Za-z0-9]{{3}}))?"
    rf"(?:{_SEP}[Xx]{_SEP}[A-Za-z0-9]{{1,8}})?|[Xx](?:{_SEP}[A-Za-z0-9]{{1,8}}){{1,3}}){_EDGE_SPACE}$"
)
"""The BCP-47 tags accepted: language, then optionally an extlang, a script, a region, one variant and
one private-use subtag ('_' or '-' between them), or a private-use tag. A subset of what
`normalize_language_tag` reads (no extensions, one variant) whose repetitions are bounded, so that
a schema-driven generator can produce tags of a given length."""
_LANGUAGE_RE = re.compile(LANGUAGE_PATTERN)
# RFC 3339 (the JSON schema's "date" and "date-time" formats): ASCII digits, "T" or "t", "Z", "z"
# or a numeric offset. ISO 8601's other forms (20250801, 2025-W31-1, 2025-213, a space for the
# "T", no seconds) are refused, here as in the search filters.
_RFC3339_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339_DATETIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt](?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?)"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
# What str.isspace() calls white space: a metadata key must hold something else (and no NUL).
_NOT_SPACE = r"[^\x00\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_METADATA_KEY_PATTERN = rf"^[^\x00]*{_NOT_SPACE}[^\x00]*$"
MAX_TITLE_CHARS = 2_000
MAX_URL_CHARS = 4_096
MAX_SOURCE_CHARS = 256
MAX_METADATA_KEYS = 100
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 10_000

MetadataValue = StrictStr | StrictBool | StrictInt | StrictFloat
_ID_RULE = (
    "an id must be 1-256 characters among letters, digits and . _ ~ : @ - ! $ & ' ( ) * + , ; = "
    "(no '/', '%', '?', '#' or spaces, not '.' or '..'), so it can be used in /v1/articles/{id}"
)


def validate_article_id(value: str) -> str:
    """The id itself when it is usable in a URL path; ValueError with the rule otherwise."""
    if not _ID_RE.fullmatch(value):
        raise ValueError(f"invalid id {value[:300]!r}: {_ID_RULE}")
    return value


def check_language_tag(value: str) -> str:
    """The tag in canonical form ("pt-BR") when it has one of the shapes of `LANGUAGE_PATTERN`;
    ValueError otherwise. Articles, search filters and question languages all take this rule."""
    if not _LANGUAGE_RE.fullmatch(value):
        raise ValueError(
            f"invalid language tag {value[:50]!r}: expected BCP-47 such as 'en', 'zh' or 'pt-BR'"
        )
    return normalize_language_tag(value)


def has_letter_or_digit(value: str) -> bool:
    """True when `value` holds a letter or a digit of any script (Unicode categories L and N)."""
    return _LETTER_OR_DIGIT.search(value) is not None


def _storable(value: str, name: str) -> str:
    """The value itself unless it holds a NUL or an unpaired surrogate (unstorable as UTF-8)."""
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} contains an unpaired surrogate at position {exc.start}") from None
    return value


def _parse_rfc3339(value: str) -> dt.date:
    """A date or a datetime from RFC 3339 text, exactly (ValueError for anything else)."""
    if _RFC3339_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"published_at {value!r} is not a real date ({exc})") from None
    m = _RFC3339_DATETIME.fullmatch(value)
    if m is None:
        raise ValueError(
            f"published_at {value[:100]!r} is not an RFC 3339 date (YYYY-MM-DD) or date-time "
            "(YYYY-MM-DDThh:mm:ss[.fraction] then Z or an offset such as +02:00)"
        )
    if m["offset"] is None:
        raise ValueError(
            "published_at has no time zone: add 'Z' or an offset such as '+02:00', or give a date"
        )
    offset = "+00:00" if m["offset"] in "Zz" else m["offset"]
    try:
        return dt.datetime.fromisoformat(f"{m['date']}T{m['time']}{offset}")
    except ValueError as exc:
        raise ValueError(f"published_at {value!r} is not a real date and time ({exc})") from None


def _parse_published_at(value: object) -> dt.date | None:
    """A date or an aware datetime from RFC 3339 text, a date or a datetime; ValueError else."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse_rfc3339(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "published_at has no time zone: add 'Z' or an offset such as '+02:00', or give a date"
            )
        return value
    if isinstance(value, dt.date):
        return value
    raise ValueError(f"published_at must be an ISO 8601 date or datetime string, not {type(value).__name__}")


def _iso(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _check_metadata(value: object) -> dict[str, Any]:
    """Refuse non-flat metadata with one clear message per problem (before pydantic's type check)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"metadata must be an object of key -> value pairs, not {type(value).__name__}")
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"metadata has {len(value)} keys; at most {MAX_METADATA_KEYS} are allowed")
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_METADATA_KEY_CHARS:
            raise ValueError(f"metadata key {key!r} must be a non-empty string of at most 128 characters")
        _storable(key, "a metadata key")
        _check_metadata_value(key, item)
    return dict(value)


def _check_metadata_value(key: str, item: object) -> None:
    """A flat value: a storable string of bounded length, a finite number or a boolean."""
    if item is None:
        raise ValueError(f"metadata[{key!r}] is null; values must be strings, numbers or booleans")
    if isinstance(item, Mapping | list | tuple | set):
        raise ValueError(
            f"metadata[{key!r}] is nested ({type(item).__name__}); metadata is flat: "
            "values must be strings, numbers or booleans"
        )
    if not isinstance(item, str | int | float | bool):
        raise ValueError(f"metadata[{key!r}] must be a string, number or boolean, not {type(item).__name__}")
    if isinstance(item, float) and not math.isfinite(item):
        raise ValueError(f"metadata[{key!r}] must be a finite number")
    if isinstance(item, str):
        if len(item) > MAX_METADATA_VALUE_CHARS:
            raise ValueError(f"metadata[{key!r}] is longer than {MAX_METADATA_VALUE_CHARS} characters")
        _storable(item, f"metadata[{key!r}]")


_ID_SCHEMA = {"type": "string", "pattern": ID_PATTERN, "minLength": 1, "maxLength": ID_MAX_LENGTH}
_METADATA_SCHEMA = {
    "type": "object",
    "maxProperties": MAX_METADATA_KEYS,
    "propertyNames": {"minLength": 1, "maxLength": MAX_METADATA_KEY_CHARS, "pattern": _METADATA_KEY_PATTERN},
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "maxLength": MAX_METADATA_VALUE_CHARS, "pattern": NO_NUL_PATTERN},
            {"type": "boolean"},
            {"type": "integer"},
            {"type": "number"},
        ]
    },
}
_PUBLISHED_AT_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date"},
        {"type": "string", "format": "date-time"},
        {"type": "null"},
    ]
}


class ArticleInput(BaseModel):
    """An article as a caller sends it: only `text` is required; the rest is optional."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "reuters-2025-08-01-nvidia-h20",
                    "title": "英伟达回应:没后门",
                    "text": "NVIDIA's spokesperson emphasized that their chips do not contain any "
                    '"backdoors" [2].',
                    "url": "https://example.com/news/nvidia-h20",
                    "source": "Example News",
                    "published_at": "2025-08-01T09:30:00+08:00",
                    "language": "en",
                    "metadata": {"section": "technology", "paywalled": False},
                }
            ]
        },
    )

    id: Annotated[StrictStr, WithJsonSchema(_ID_SCHEMA)] | None = Field(
        default=None,
        description="Stable article id (1-256 of A-Z a-z 0-9 . _ ~ : @ - ! $ & ' ( ) * + , ; =). When absent it is derived "
        "from the URL (url-<hex>), else from the title and text (sha-<hex>).",
        examples=["reuters-2025-08-01-nvidia-h20"],
    )
    title: (
        Annotated[StrictStr, Field(max_length=MAX_TITLE_CHARS, json_schema_extra={"pattern": NO_NUL_PATTERN})]
        | None
    ) = Field(default=None, description="Headline.", examples=["英伟达回应:没后门"])
    text: StrictStr = Field(
        description="The article body, kept exactly as given: passages cite character offsets into "
        "it. Must hold a letter or a digit, and no NUL; at most 1,000,000 bytes of UTF-8 by default.",
        examples=["NVIDIA's spokesperson emphasized that their chips do not contain any backdoors [2]."],
        json_schema_extra={"pattern": TEXT_PATTERN},
    )
    url: (
        Annotated[StrictStr, Field(max_length=MAX_URL_CHARS, json_schema_extra={"pattern": URL_PATTERN})]
        | None
    ) = Field(
        default=None,
        description="Absolute http(s) link to the article (blank counts as none).",
        examples=["https://example.com/news/nvidia-h20"],
    )
    source: (
        Annotated[
            StrictStr, Field(max_length=MAX_SOURCE_CHARS, json_schema_extra={"pattern": NO_NUL_PATTERN})
        ]
        | None
    ) = Field(default=None, description="Publisher or feed name.", examples=["Example News"])
    published_at: Annotated[
        dt.datetime | dt.date | str | None,
        WithJsonSchema(_PUBLISHED_AT_SCHEMA),
    ] = Field(
        default=None,
        description="Publication date (RFC 3339 full-date, YYYY-MM-DD) or date-time with its offset "
        "(YYYY-MM-DDThh:mm:ss[.fraction] then Z or +hh:mm); other ISO 8601 forms, naive date-times and "
        "impossible dates are refused.",
        examples=["2025-08-01", "2025-08-01T09:30:00+08:00"],
    )
    language: (
        Annotated[StrictStr, Field(max_length=35, json_schema_extra={"pattern": LANGUAGE_PATTERN})] | None
    ) = Field(
        default=None,
        description="BCP-47 language tag of the text (e.g. en, zh, pt-BR); detected when absent.",
        examples=["en"],
    )
    metadata: Annotated[
        dict[str, MetadataValue], WithJsonSchema({"anyOf": [_METADATA_SCHEMA, {"type": "null"}]})
    ] = Field(
        default_factory=dict,
        description="Flat key -> value pairs (string, number or boolean); nested values are refused; "
        "null is none.",
        examples=[{"section": "technology", "paywalled": False}],
    )

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str | None) -> str | None:
        return None if value is None else validate_article_id(value)

    @field_validator("title", "text", "source", "url", "language")
    @classmethod
    def _storable_strings(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _storable(value, str(info.field_name))

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _URL_RE.fullmatch(value):
            raise ValueError(
                f"url {value[:200]!r} must be an absolute http:// or https:// URL without spaces or "
                '" < > (percent-encode them), with a valid host and port'
            )
        s = value.strip()
        if not s:
            return None
        try:
            parts = urlsplit(s)
        except ValueError as exc:
            raise ValueError(f"url {value[:200]!r} is not a valid URL ({exc})") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {value[:200]!r} must be an absolute http:// or https:// URL")
        if any(ch.isspace() or ord(ch) < 0x20 for ch in s):
            raise ValueError(f"url {value[:200]!r} contains whitespace or control characters")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"url {value[:200]!r} has an invalid port") from None
        return s

    @field_validator("published_at", mode="before")
    @classmethod
    def _valid_published_at(cls, value: object) -> dt.date | None:
        return _parse_published_at(value)

    @field_validator("language")
    @classmethod
    def _valid_language(cls, value: str | None) -> str | None:
        return None if value is None else check_language_tag(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _flat_metadata(cls, value: object) -> dict[str, Any]:
        return _check_metadata(value)


@dataclass(frozen=True)
class Article:
    """A validated, normalised article; `content_hash` tells whether its content changed."""

    id: str
    title: str | None
    text: str
    url: str | None
    source: str | None
    published_at: str | None
    language: str | None
    metadata: Mapping[str, str | int | float | bool] = field(hash=False)
    content_hash: str


def normalize_url(url: str) -> str:
    """The URL in the form used for ids: scheme/host lower-case, no default port, fragment or trailing /."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is not None and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def duplicate_id_problems(articles: Sequence[Article]) -> list[dict[str, object]]:
    """One problem per repeated id in a batch (final ids, derived ones included), naming both positions."""
    first: dict[str, int] = {}
    problems: list[dict[str, object]] = []
    for i, a in enumerate(articles):
        if a.id in first:
            problems.append(
                {"field": "id", "message": f"duplicate id {a.id!r} (also at index {first[a.id]})", "index": i}
            )
        else:
            first[a.id] = i
    return problems


def _canonical_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def derive_id(*, url: str | None, title: str | None, text: str) -> str:
    """A stable id: `url-<16 hex>` from the normalised URL, else `sha-<16 hex>` of title and text."""
    if url:
        return "url-" + hashlib.sha256(normalize_url(url).encode()).hexdigest()[:16]
    return "sha-" + hashlib.sha256(_canonical_json([title or "", text]).encode()).hexdigest()[:16]


def content_hash(
    *,
    title: str | None,
    text: str,
    url: str | None,
    source: str | None,
    published_at: str | None,
    language: str | None,
    metadata: Mapping[str, object],
) -> str:
    """sha256 (hex) of the canonical JSON of the content fields: equal content, equal hash."""
    doc = {
        "title": title,
        "text": text,
        "url": url,
        "source": source,
        "published_at": published_at,
        "language": language,
        "metadata": dict(metadata),
    }
    return hashlib.sha256(_canonical_json(doc).encode()).hexdigest()


def _strip_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    s = value.strip()
    return s or None


Problems = list[dict[str, str]]


def _text_problems(text: str, max_bytes: int) -> Problems:
    """What is wrong with an article's text: unstorable, blank, no letter or digit, too large."""
    problems: Problems = []
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        problems.append(
            {"field": "text", "message": f"text contains an unpaired surrogate at position {exc.start}"}
        )
        size = 0
    if not text.strip():
        problems.append({"field": "text", "message": "text is empty or whitespace only"})
    elif not has_letter_or_digit(text):
        problems.append(
            {
                "field": "text",
                "message": "text has no letter or digit (only spaces, punctuation, symbols or invisible "
                "characters)",
            }
        )
    elif size > max_bytes:
        problems.append(
            {"field": "text", "message": f"text is {size} bytes of UTF-8, over the limit of {max_bytes}"}
        )
    return problems


def _surrogate_problems(inp: ArticleInput) -> Problems:
    """The short string fields that cannot be stored as UTF-8 (models built without validation)."""
    problems: Problems = []
    for name in ("title", "source", "url", "id"):
        value = getattr(inp, name)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                problems.append({"field": name, "message": f"{name} contains an unpaired surrogate"})
    return problems


def _checked(problems: Problems, field: str, check: Callable[[], _T]) -> _T | None:
    """`check()`, or None with its ValueError recorded as a problem of `field`."""
    try:
        return check()
    except ValueError as exc:
        problems.append({"field": field, "message": str(exc)})
        return None


def build_article(inp: ArticleInput, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Article:
    """Validate and normalise an input into an Article; InvalidArticleError lists every problem."""
    text = inp.text
    problems = _text_problems(text, max_bytes) + _surrogate_problems(inp)
    published = _iso(_checked(problems, "published_at", partial(_parse_published_at, inp.published_at)))
    language: str | None = None
    if inp.language is not None:
        language = _checked(problems, "language", partial(normalize_language_tag, inp.language))
    if inp.id is not None:
        _checked(problems, "id", partial(validate_article_id, inp.id))
    metadata = _checked(problems, "metadata", partial(_check_metadata, inp.metadata)) or {}
    if problems:
        raise InvalidArticleError("; ".join(p["message"] for p in problems), details=problems)

    title = _strip_or_none(inp.title)
    source = _strip_or_none(inp.source)
    url = _strip_or_none(inp.url)
    if language in (None, "und"):
        language = detect_language(text)
    article_id = inp.id if inp.id is not None else derive_id(url=url, title=title, text=text)
    frozen_meta = MappingProxyType(dict(metadata))
    return Article(
        id=article_id,
        title=title,
        text=text,
        url=url,
        source=source,
        published_at=published,
        language=language,
        metadata=frozen_meta,
        content_hash=content_hash(
            title=title,
            text=text,
            url=url,
            source=source,
            published_at=published,
            language=language,
            metadata=frozen_meta,
        ),
    )
