"""Reading articles from files and folders: JSON, JSONL, Markdown and plain text.

Formats (by extension):
- `.json`: one article object, a list of them, or {"articles": [...]}; records without an id get
  the usual derived id (from the URL, else the content).
- `.jsonl` / `.ndjson`: one article object per line (blank lines ignored).
- `.md` / `.markdown` / `.txt` / `.text`: optional YAML front matter (id, title, url, source,
  published_at or date, language or lang, metadata; any other key goes into metadata), then the
  first non-blank line is the title (a Markdown heading loses its #s), and the text is the rest
  exactly as in the file, less leading blank lines and trailing whitespace. A file with a single
  line has that line as its text and no title. Without an id in the front matter, the id is the
  file name stem (`seeds/000_cb51183e942cda20.txt` -> `000_cb51183e942cda20`), so re-ingesting a
  file updates the same article; a stem with characters outside the id alphabet is sanitised and
  suffixed with a hash of the stem, and a stem already used by another file of the run is an error.

Folders are read recursively in sorted order; hidden files and folders are skipped silently, files
with other extensions are reported as skipped. Problems are reported per file or per line (an item
with `error`) and reading goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontmatter.default_handlers import YAMLHandler
from pydantic import ValidationError

from citesearch.index.articles import ArticleInput
from citesearch.index.errors import SourceError

__all__ = [
    "ARTICLE_EXTENSIONS",
    "SourceItem",
    "count_sources",
    "file_id",
    "iter_sources",
    "list_source_files",
    "parse_text_file",
]

JSON_EXTENSIONS = frozenset({".json"})
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson"})
TEXT_EXTENSIONS = frozenset({".md", ".markdown", ".txt", ".text"})
ARTICLE_EXTENSIONS = JSON_EXTENSIONS | JSONL_EXTENSIONS | TEXT_EXTENSIONS

_FRONT_MATTER_OPEN = re.compile(r"\A---[ \t]*\r?\n")
_FRONT_MATTER_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.MULTILINE)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t\f\v]*(?:\r\n|\n|\r))+")
_LINE_END = re.compile(r"\r\n|\n|\r")
_HEADING = re.compile(r"\A\s{0,3}#{1,6}(?:\s+|$)(.*?)(?:\s+#+)?\s*\Z")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._~:@-]+")
_FRONT_MATTER_FIELDS = {
    "id": "id",
    "title": "title",
    "url": "url",
    "source": "source",
    "published_at": "published_at",
    "date": "published_at",
    "language": "language",
    "lang": "language",
}


@dataclass(frozen=True)
class SourceItem:
    """One article read from a file, or the reason a file or line was not read (error/skipped)."""

    path: Path
    article: ArticleInput | None = None
    error: str | None = None
    skipped: str | None = None
    line: int | None = None
    index: int | None = None

    @property
    def origin_file(self) -> str:
        """The file the item comes from."""
        return str(self.path)

    @property
    def origin(self) -> str:
        """Where the item comes from: `path`, `path:line` (JSONL) or `path[index]` (JSON list)."""
        if self.line is not None:
            return f"{self.path}:{self.line}"
        if self.index is not None:
            return f"{self.path}[{self.index}]"
        return str(self.path)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(folder: Path) -> Iterator[Path]:
    """Files under folder, recursively, in sorted order; hidden entries and folder links skipped."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if _hidden(entry.name):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(path)
            elif entry.is_file():
                yield path
        except OSError:
            continue


def _expand(paths: Sequence[Path]) -> Iterator[tuple[Path, str | None, str | None]]:
    """(path, error, skipped) for every file the paths name, folders expanded."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for f in _walk(path):
                if f.suffix.lower() in ARTICLE_EXTENSIONS:
                    yield f, None, None
                else:
                    yield f, None, f"unsupported file type {f.suffix or '(none)'!r}"
        elif path.is_file():
            if path.suffix.lower() in ARTICLE_EXTENSIONS:
                yield path, None, None
            else:
                kinds = ", ".join(sorted(ARTICLE_EXTENSIONS))
                yield path, f"unsupported file type {path.suffix or '(none)'!r} (expected {kinds})", None
        elif path.exists():
            yield path, "not a regular file or folder", None
        else:
            yield path, "no such file or folder", None


def list_source_files(paths: Sequence[Path]) -> list[Path]:
    """The article files iter_sources will read, in order (cheap: no file is opened)."""
    return [p for p, error, skipped in _expand(paths) if error is None and skipped is None]


def count_sources(paths: Sequence[Path]) -> int:
    """How many article files iter_sources will read (for a progress bar's total)."""
    return len(list_source_files(paths))


def file_id(path: Path) -> str:
    """The article id of a text/Markdown file without one: its stem, sanitised if it must be."""
    stem = path.stem
    safe = _ID_UNSAFE.sub("-", stem).strip("-")[:200]
    if safe == stem and safe not in ("", ".", ".."):
        return safe
    digest = hashlib.sha256(stem.encode("utf-8", "surrogatepass")).hexdigest()
    if not safe.strip("."):
        return f"file-{digest[:16]}"
    return f"{safe}-{digest[:8]}"


def _validation_message(exc: ValidationError) -> str:
    """A compact one-line description of pydantic errors: `field: message; ...`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "article"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _article(data: object) -> ArticleInput | str:
    """An ArticleInput from a decoded JSON/YAML object, or the reason it is not one."""
    if not isinstance(data, dict):
        return f"expected an article object, got {type(data).__name__}"
    try:
        return ArticleInput.model_validate(data)
    except ValidationError as exc:
        return _validation_message(exc)


def _read_text(path: Path) -> str:
    """The file's text, newlines kept exactly; a UTF-8 byte order mark is dropped."""
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        return fh.read()


def _split_front_matter(raw: str) -> tuple[dict[str, Any], str]:
    """(front matter, rest of the file); SourceError when the front matter is not a YAML mapping."""
    opening = _FRONT_MATTER_OPEN.match(raw)
    if opening is None:
        return {}, raw
    closing = _FRONT_MATTER_CLOSE.search(raw, opening.end())
    if closing is None:
        return {}, raw
    try:
        meta = YAMLHandler().load(raw[opening.end() : closing.start()])
    except Exception as exc:  # yaml raises many error types
        raise SourceError(f"invalid YAML front matter: {exc}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SourceError("the front matter must be a YAML mapping of key: value")
    return meta, raw[closing.end() :]


def parse_text_file(raw: str, *, markdown: bool, default_id: str | None) -> dict[str, Any]:
    """Article fields from a text/Markdown file's content (front matter, title line, body); SourceError."""
    meta, content = _split_front_matter(raw)
    fields: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for key, value in meta.items():
        name = _FRONT_MATTER_FIELDS.get(str(key))
        if name is not None and name not in fields:
            fields[name] = value
        elif key == "metadata":
            if not isinstance(value, dict):
                raise SourceError("front matter 'metadata' must be a mapping")
            metadata.update(value)
        else:
            metadata[str(key)] = value
    if metadata:
        fields["metadata"] = metadata
    body = _LEADING_BLANK_LINES.sub("", content)
    if "title" not in fields:
        end = _LINE_END.search(body)
        first = body if end is None else body[: end.start()]
        rest = "" if end is None else body[end.end() :]
        rest = _LEADING_BLANK_LINES.sub("", rest).rstrip()
        if rest.strip():
            title = first.strip()
            heading = _HEADING.match(first) if markdown else None
            if heading is not None:
                title = heading.group(1).strip()
            fields["title"] = title or None
            body = rest
    fields["text"] = body.rstrip()
    if "id" not in fields and default_id is not None:
        fields["id"] = default_id
    return fields


def _read_json(path: Path) -> Iterator[SourceItem]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        yield SourceItem(path, error=f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        return
    if isinstance(data, dict) and "articles" in data and "text" not in data:
        data = data["articles"]
        if not isinstance(data, list):
            yield SourceItem(path, error="'articles' must be a list of article objects")
            return
    if isinstance(data, list):
        for i, obj in enumerate(data):
            got = _article(obj)
            if isinstance(got, str):
                yield SourceItem(path, error=got, index=i)
            else:
                yield SourceItem(path, article=got, index=i)
        return
    got = _article(data)
    yield SourceItem(path, error=got) if isinstance(got, str) else SourceItem(path, article=got)


def _read_jsonl(path: Path) -> Iterator[SourceItem]:
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        for n, line in enumerate(_lines(fh), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield SourceItem(path, error=f"invalid JSON at column {exc.colno}: {exc.msg}", line=n)
                continue
            got = _article(data)
            if isinstance(got, str):
                yield SourceItem(path, error=got, line=n)
            else:
                yield SourceItem(path, article=got, line=n)


def _lines(fh: Any) -> Iterator[str]:
    """Lines of a file split at \\n only (JSON strings may hold other line separators)."""
    pending = ""
    while chunk := fh.read(1 << 20):
        pending += chunk
        *complete, pending = pending.split("\n")
        yield from complete
    if pending:
        yield pending


def iter_sources(paths: Sequence[Path]) -> Iterator[SourceItem]:
    """Every article in the files and folders named, in order; bad files or lines become errors."""
    stems: dict[str, Path] = {}
    for path, error, skipped in _expand(paths):
        if error is not None or skipped is not None:
            yield SourceItem(path, error=error, skipped=skipped)
            continue
        suffix = path.suffix.lower()
        try:
            if suffix in JSON_EXTENSIONS:
                yield from _read_json(path)
            elif suffix in JSONL_EXTENSIONS:
                yield from _read_jsonl(path)
            else:
                default_id = file_id(path)
                fields = parse_text_file(
                    _read_text(path), markdown=suffix in (".md", ".markdown"), default_id=default_id
                )
                if fields.get("id") == default_id:
                    other = stems.get(default_id)
                    if other is not None:
                        yield SourceItem(
                            path,
                            error=f"id {default_id!r} (from the file name) is already used by {other}; "
                            "give one of them an id in its front matter",
                        )
                        continue
                    stems[default_id] = path
                got = _article(fields)
                yield SourceItem(path, error=got) if isinstance(got, str) else SourceItem(path, article=got)
        except UnicodeDecodeError as exc:
            yield SourceItem(path, error=f"not valid UTF-8 (byte {exc.start}): {exc.reason}")
        except OSError as exc:
            yield SourceItem(path, error=f"cannot read: {exc.strerror or exc}")
        except SourceError as exc:
            yield SourceItem(path, error=exc.message)
