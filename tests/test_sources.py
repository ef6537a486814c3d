"""Reading articles from JSON, JSONL, Markdown and text files and from folders."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from citesearch.index.articles import build_article
from citesearch.index.sources import (
    SourceItem,
    count_sources,
    file_id,
    iter_sources,
    list_source_files,
    parse_text_file,
)

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "000_cb51183e942cda20.txt"
DATA = Path(__file__).resolve().parent / "data" / "sources"


def by_origin(items: list[SourceItem]) -> dict[str, SourceItem]:
    return {it.origin.removeprefix(str(DATA) + "/"): it for it in items}


def test_the_seed_ingests_unchanged() -> None:
    items = list(iter_sources([SEED]))
    assert len(items) == 1 and items[0].error is None and items[0].article is not None
    inp = items[0].article
    raw = SEED.read_text(encoding="utf-8")
    assert inp.title == "英伟达回应:没后门"
    assert inp.text == raw.split("\n", 2)[2] == raw.partition("\n")[2].strip()
    assert inp.text.startswith("Core Viewpoint - The article") and inp.text.endswith("advanced chips [4].")
    assert inp.id == "000_cb51183e942cda20"
    article = build_article(inp)
    assert article.language == "en" and article.text == inp.text


def test_a_folder_is_read_recursively_in_sorted_order() -> None:
    items = by_origin(list(iter_sources([DATA])))
    assert list(items) == [
        "broken.json",
        "feed.jsonl:1",
        "feed.jsonl:3",
        "feed.jsonl:4",
        "feed.jsonl:5",
        "feed.jsonl:6",
        "list.json[0]",
        "list.json[1]",
        "list.json[2]",
        "nested/deep.md",
        "note.txt",
        "post.md",
        "single.json",
        "table.csv",
        "wrapped.json[0]",
    ]
    assert not any(".hidden" in o for o in items)
    assert (
        items["table.csv"].skipped and items["table.csv"].error is None and items["table.csv"].article is None
    )


def test_bad_files_and_lines_are_reported_and_the_rest_goes_on() -> None:
    items = by_origin(list(iter_sources([DATA])))
    assert "invalid JSON at line 2" in (items["broken.json"].error or "")
    assert "text: Input should be a valid string" in (items["feed.jsonl:3"].error or "")
    assert "invalid JSON" in (items["feed.jsonl:4"].error or "")
    assert "nested" in (items["feed.jsonl:5"].error or "")
    assert "invalid id 'bad/id'" in (items["list.json[2]"].error or "")
    good = [o for o, it in items.items() if it.article is not None]
    assert good == [
        "feed.jsonl:1",
        "feed.jsonl:6",
        "list.json[0]",
        "list.json[1]",
        "nested/deep.md",
        "note.txt",
        "post.md",
        "single.json",
        "wrapped.json[0]",
    ]
    for o in good:
        assert items[o].error is None and items[o].skipped is None
        build_article(items[o].article)  # type: ignore[arg-type]


def test_json_shapes() -> None:
    items = by_origin(list(iter_sources([DATA / "list.json", DATA / "wrapped.json", DATA / "single.json"])))
    storm = items["list.json[0]"].article
    assert storm is not None and storm.id == "storm-1" and storm.published_at == dt.date(2025, 1, 10)
    untitled = items["list.json[1]"].article
    assert untitled is not None and untitled.id is None
    assert (
        build_article(untitled).id
        == build_article(untitled.model_copy(update={"url": "https://example.com/sport/cup"})).id
    )
    markets = items["wrapped.json[0]"].article
    assert markets is not None and markets.metadata == {"section": "markets", "rank": 2, "paywalled": False}
    single = items["single.json"].article
    assert single is not None and single.id == "single-1"


def test_markdown_front_matter_heading_and_body() -> None:
    [item] = list(iter_sources([DATA / "post.md"]))
    inp = item.article
    assert inp is not None
    assert inp.title == "NVIDIA answers: no backdoor"
    assert inp.text == (
        "NVIDIA said its H20 chips have no backdoor [2].\n\nThe company has applied to resume sales in China [4]."
    )
    assert inp.id == "post" and inp.url == "https://example.com/news/h20" and inp.source == "Example News"
    assert inp.language == "en"
    assert inp.metadata == {"section": "technology", "author": "Jane Doe"}
    a = build_article(inp)
    assert a.published_at == "2025-08-01T09:30:00+08:00"


def test_text_body_is_kept_exactly_less_leading_blank_lines_and_trailing_space() -> None:
    [item] = list(iter_sources([DATA / "note.txt"]))
    assert item.article is not None
    assert item.article.title == "Plain headline"
    assert item.article.text == "  Indented first body line.\r\nSecond line."


@pytest.mark.parametrize(
    ("raw", "title", "text"),
    [
        ("Title\nBody", "Title", "Body"),
        ("\n\n  Title  \n\n\nBody\n\nMore\n\n", "Title", "Body\n\nMore"),
        ("Only one line\n", None, "Only one line"),
        ("---\ntitle: From YAML\n---\nFirst line\nSecond", "From YAML", "First line\nSecond"),
        ("---\n---\nT\nB", "T", "B"),
    ],
)
def test_title_line_rules(raw: str, title: str | None, text: str) -> None:
    fields = parse_text_file(raw, markdown=False, default_id=None)
    assert fields.get("title") == title and fields["text"] == text


def test_markdown_heading_markers_are_removed_only_in_markdown() -> None:
    assert parse_text_file("## A heading ##\nBody", markdown=True, default_id=None)["title"] == "A heading"
    assert (
        parse_text_file("# Not markdown\nBody", markdown=False, default_id=None)["title"] == "# Not markdown"
    )


def test_file_errors(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes(b"Titre\n\ncaf\xe9")
    (tmp_path / "bad_yaml.md").write_text("---\nurl: [unclosed\n---\nT\nB", encoding="utf-8")
    (tmp_path / "list_yaml.md").write_text("---\n- a\n- b\n---\nT\nB", encoding="utf-8")
    (tmp_path / "naive.md").write_text("---\npublished_at: 2025-01-10 10:00:00\n---\nT\nB", encoding="utf-8")
    (tmp_path / "ok.txt").write_text("T\nB", encoding="utf-8")
    items = {it.path.name: it for it in iter_sources([tmp_path, tmp_path / "missing.json"])}
    assert "not valid UTF-8" in (items["latin1.txt"].error or "")
    assert "invalid YAML" in (items["bad_yaml.md"].error or "")
    assert "mapping" in (items["list_yaml.md"].error or "")
    assert "no time zone" in (items["naive.md"].error or "")
    assert items["missing.json"].error == "no such file or folder"
    assert items["ok.txt"].article is not None


def test_an_explicit_file_of_unknown_type_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.pdf"
    path.write_bytes(b"%PDF")
    [item] = list(iter_sources([path]))
    assert item.error is not None and "unsupported file type '.pdf'" in item.error


def test_ids_from_file_names(tmp_path: Path) -> None:
    assert file_id(Path("seeds/000_cb51183e942cda20.txt")) == "000_cb51183e942cda20"
    assert file_id(Path("a b.md")).startswith("a-b-")
    assert file_id(Path("英伟达.txt")).startswith("file-")
    assert file_id(Path("英伟达.txt")) != file_id(Path("中国.txt"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "same.txt").write_text("T\nfirst", encoding="utf-8")
    (tmp_path / "b" / "same.txt").write_text("T\nsecond", encoding="utf-8")
    (tmp_path / "b" / "other.md").write_text("---\nid: chosen\n---\nT\nB", encoding="utf-8")
    items = list(iter_sources([tmp_path]))
    assert items[0].article is not None and items[0].article.id == "same"
    assert items[1].article is not None and items[1].article.id == "chosen"
    assert items[2].error is not None and "already used" in items[2].error


def test_file_list_for_a_progress_bar() -> None:
    files = list_source_files([DATA, SEED])
    assert [f.name for f in files] == [
        "broken.json",
        "feed.jsonl",
        "list.json",
        "deep.md",
        "note.txt",
        "post.md",
        "single.json",
        "wrapped.json",
        SEED.name,
    ]
    assert count_sources([DATA, SEED]) == len(files)
    read = {it.path for it in iter_sources([DATA, SEED]) if it.skipped is None}
    assert read == set(files)
