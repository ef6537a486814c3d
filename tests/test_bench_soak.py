"""The soak benchmark's analysis and output (bench/soak.py) on synthetic samples: no server, no model."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, cast

import pytest

from bench import soak
from bench.quality import Doc
from bench.soak import QUICK, Expected, Sample, Soak


def _docs() -> list[Doc]:
    words = "The quick brown fox jumps over the lazy dog near the river bank. "
    return [Doc(f"en_{i}", f"Title {i}", "en", words * 40 + "Café " * i) for i in range(3)] + [
        Doc("zh_0", "Title zh", "zh", "北京是中国的首都。" * 50)
    ]


def test_huge_text_is_cut_by_characters_or_utf8_bytes() -> None:
    docs = _docs()
    by_chars = soak.huge_text(docs, n_chars=20_000)
    assert 19_000 < len(by_chars) <= 20_000
    by_bytes = soak.huge_text(docs, max_bytes=30_000)
    assert 29_000 < len(by_bytes.encode()) <= 30_000
    assert "北京" not in by_chars  # English text when there is some


def test_judge_tells_ok_lost_stale_and_partial() -> None:
    text = "One sentence. Two sentences."
    exp = Expected(text, "t", 2)
    good = {
        "text": text,
        "passages": [
            {"char_start": 0, "char_end": 13, "text": text[:13]},
            {"char_start": 14, "char_end": 28, "text": text[14:]},
        ],
    }
    assert Soak._judge(good, exp) == "ok"
    assert Soak._judge(None, exp) == "lost"
    assert Soak._judge({**good, "text": text + " More."}, exp) == "stale"
    assert Soak._judge({**good, "passages": good["passages"][:1]}, exp) == "partial"
    assert Soak._judge({**good, "passages": good["passages"][:1]}, Expected(text, "t", -1)) == "ok"
    assert Soak._judge({**good, "passages": []}, Expected(text, "t", -1)) == "partial"


def _fake_run() -> dict[str, Any]:
    """What `run` assembles, from a hand-made record of requests and RSS samples."""
    phases: list[dict[str, Any]] = [
        {"name": "idle", "readers": 4, "writers": 0, "start": 0.0, "end": 10.0},
        {"name": "writes_alone", "readers": 0, "writers": 2, "start": 10.5, "end": 20.0},
        {"name": "mixed", "readers": 4, "writers": 2, "start": 20.5, "end": 30.0},
        {"name": "reindex", "readers": 4, "writers": 1, "start": 30.5, "end": 40.0},
        {"name": "huge_article", "readers": 4, "writers": 1, "start": 40.5, "end": 50.0},
        {"name": "memory_soak", "readers": 1, "writers": 2, "start": 50.5, "end": 80.0},
    ]
    samples: list[Sample] = []
    for p in phases:
        t = p["start"]
        while t < p["end"] - 0.5:
            slow = p["name"] in ("mixed", "huge_article")
            ms = 0.4 if slow and int(t) % 3 == 0 else 0.05
            samples.append(Sample("search", "search", p["name"], t, t + ms, 200, True))
            if p["writers"] and p["name"] != "huge_article":
                samples.append(Sample("write", "update", p["name"], t, t + 0.3, 200, True, None, 2, 10))
            t += 0.25
    samples.append(Sample("search", "search", "mixed", 25.0, 25.1, 503, False, "busy"))
    samples.append(Sample("huge", "huge", "huge_article", 42.0, 42.1, 422, True))
    samples.append(Sample("huge", "huge", "huge_article", 43.0, 47.0, 200, True, None, 1, 500))
    rss = [(float(t), 1000.0 + (t - 50) * 0.5 if t > 50 else 1000.0, "x") for t in range(0, 80)]
    huge = [
        {
            "id": "soak-huge-1",
            "why": "first try",
            "chars": 10,
            "bytes": 10,
            "status": 422,
            "t0": 42.0,
            "t1": 42.1,
            "seconds": 0.1,
            "error": "over the limit of 5",
        },
        {
            "id": "soak-huge-2",
            "why": "x",
            "chars": 5,
            "bytes": 5,
            "status": 200,
            "t0": 43.0,
            "t1": 47.0,
            "seconds": 4.0,
            "passages": 500,
        },
    ]
    fake = types.SimpleNamespace(
        samples=samples,
        rss=[(t, mb, "memory_soak" if t >= 50.5 else "other") for t, mb, _ in rss],
        server_cpu=[(t, t * 0.9) for t, _mb, _p in rss],
        results={"huge_attempts": huge},
    )
    s = cast(Soak, fake)
    r: dict[str, Any] = {
        "plan": {"name": "test"},
        "machine": {"cpu": "test", "cores": 2},
        "server": {"ready_s": 1.0},
    }
    r["phases"] = {p["name"]: {**soak.phase_report(s, {**p, "cpu_cores": {}}), **p} for p in phases}
    r["reindex"] = {"status": "succeeded", "seconds": 9.0}
    r["huge_article"] = soak.huge_report(s, r["phases"]["idle"]["search_ms"]["p50"])
    r["memory_soak"] = soak.memory_report(s, phases[-1], 10)
    r["verify"] = {
        "checked": 3,
        "ok": 3,
        "lost": 0,
        "stale": 0,
        "partial": 0,
        "resurrected": 0,
        "uncertain_bad": 0,
        "stats_consistent": True,
        "articles_count_ok": True,
    }
    r["timeline"] = soak.timeline(s)
    r["targets"] = soak.evaluate_targets(r)
    r["out_name"], r["png_name"] = "x.json", "x.png"
    return r


def test_analysis_of_a_run() -> None:
    r = _fake_run()
    ph = r["phases"]
    assert ph["idle"]["search_ms"]["p50"] == pytest.approx(50, abs=1)
    assert ph["mixed"]["errors"] == {"search": {"503": 1}} and ph["mixed"]["errors_5xx"] == 1
    assert ph["huge_article"]["writes"]["passages"] == 500  # the accepted huge write counts, the 422 does not
    hu = r["huge_article"]
    assert hu["attempts"][1]["overlapping_searches"] > 0
    assert hu["worst_overlapping_ms"] == pytest.approx(400, abs=1)
    ms = r["memory_soak"]
    assert ms["slope_mb_per_min"] == pytest.approx(30, abs=0.5)  # 0.5 MB/s
    assert ms["growth_after_warmup_mb"] == pytest.approx(ms["rss_end_mb"] - ms["rss_after_warmup_mb"])
    met = {t["target"].split(":")[0]: t["met"] for t in r["targets"]}
    assert met["5xx responses (whole run)"] is False
    assert met["lost, stale, partial or resurrected articles; stats passages == index_vectors"] is True
    assert r["timeline"]["rss"]["rows"][5][3] == pytest.approx(0.9)  # server CPU cores
    assert len(json.dumps(r)) < 1_000_000
    md = soak.render_md(r)
    assert "| mixed |" in md and "MISSED" in md and "## Huge article" in md


def test_targets_and_markdown_of_an_aborted_run() -> None:
    r: dict[str, Any] = {
        "plan": {"name": "quick"},
        "aborted": "ServerDied: server exited with -9",
        "phases": {},
    }
    targets = soak.evaluate_targets(r)
    assert targets and not any(t["met"] for t in targets)
    assert "Run aborted" in soak.render_md(r)


def test_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "soak.png"
    soak.render_png(_fake_run(), out)
    assert out.stat().st_size > 10_000


def test_segments_break_lines_between_phases_and_gaps() -> None:
    rows = [[t, 1, 10.0, 20.0, 30.0, 40.0, 0] for t in (0, 1, 2, 30, 31, 50)]
    phases = [{"start": 0.0, "end": 40.0}, {"start": 45.0, "end": 60.0}]
    t, cols = soak._segments(rows, phases)
    assert len(t) == 8 and sum(x != x for x in t) == 2  # two NaN breaks: the 28 s gap, the phase change
    assert len(cols) == 4


def test_quick_plan_keeps_the_briefs_phase_lengths() -> None:
    assert (QUICK.idle_s, QUICK.writes_s, QUICK.mixed_s, QUICK.soak_s) == (10, 20, 30, 60)
