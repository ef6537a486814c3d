"""Build and measure the engines of a prepared model: OpenVINO fp32/bf16 and NNCF int8, then time every candidate.

Run by `citesearch model prepare` after the model itself (offline, no download). The engines are
built in a temporary sibling directory and renamed into place, so a crash never leaves a half
cache; they count as prepared only while their manifest matches the model and the OpenVINO version.
"""

from __future__ import annotations

import fcntl
import gc
import importlib.metadata
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from citesearch.embeddings.embedder import Embedder, load_embedder
from citesearch.embeddings.engine_cache import (
    CALIBRATION,
    CANDIDATES,
    ENGINES_FORMAT,
    ENGINES_MANIFEST,
    choose,
    engines_dir_for,
    ir_path,
    machine,
    read_engines_manifest,
)
from citesearch.embeddings.engines import TorchForward, convert_to_openvino, quantize_openvino
from citesearch.embeddings.prepare import _swap_into_place, read_manifest
from citesearch.embeddings.progress import Progress

CALIBRATION_SIZE = 300
"""Texts NNCF calibrates int8 activation ranges on (passages and questions, 12 languages)."""
SHORT_TEXTS = (
    "a",
    "1",
    "!",
    "x",
    "OK",
    "H20",
    "2024",
    "NVIDIA",
    "是",
    "Да",
    "نعم",
    "Ja",
    "Yes please",
    "—",
    "...",
    "N/A",
)
"""Calibrated on too, as questions and as passages: with XQuAD alone, int8 ranges miss what the
network does on nearly empty inputs (the bare prompt: cosine 0.989 to fp32, below the 0.995 bar;
with these 0.996). None of them is among the texts the cosine bar is measured on."""
CALIBRATION_VERSION = "3"
"""Bumped when how int8 is quantised or calibrated changes: older caches are built again."""
MEASURE_PASSAGES = 48
MEASURE_VERSION = "2"
"""Bumped when what prepare measures changes: older measurements are taken again (not the engines)."""
MEASURE_QUERIES = 24


@dataclass(frozen=True)
class CalibrationTexts:
    """The bundled texts, split: calibration for NNCF, a disjoint set for timing and cosines."""

    calibrate: list[tuple[str, bool]]
    """(text, is_query) pairs, languages interleaved."""
    passages: list[str]
    queries: list[str]
    reference: list[str]
    """tests/data/embeddings' texts (35 languages and scripts, empty, emoji, very long): cosines only."""


def calibration_texts(
    measure_passages: int = MEASURE_PASSAGES, measure_queries: int = MEASURE_QUERIES
) -> CalibrationTexts:
    """Split the bundled XQuAD sample: the first texts of each language are measured, the rest calibrate."""
    by_lang: dict[tuple[str, str], list[str]] = {}
    reference: list[str] = []
    with CALIBRATION.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["kind"] == "reference":
                reference.append(row["text"])
            elif row["kind"] in ("passage", "query"):
                by_lang.setdefault((row["kind"], row["language"]), []).append(row["text"])
    langs = sorted({lang for _, lang in by_lang})
    per_p = max(1, -(-measure_passages // len(langs)))
    per_q = max(1, -(-measure_queries // len(langs)))
    passages = [t for lang in langs for t in by_lang.get(("passage", lang), [])[:per_p]][:measure_passages]
    queries = [t for lang in langs for t in by_lang.get(("query", lang), [])[:per_q]][:measure_queries]
    rest_p = [by_lang.get(("passage", lang), [])[per_p:] for lang in langs]
    rest_q = [by_lang.get(("query", lang), [])[per_q:] for lang in langs]
    calibrate: list[tuple[str, bool]] = []
    for i in range(max(len(x) for x in rest_p + rest_q)):
        calibrate += [(x[i], False) for x in rest_p if i < len(x)]
        calibrate += [(x[i], True) for x in rest_q if i < len(x)]
    return CalibrationTexts(calibrate, passages, queries, reference)


def engines_prepared(model_dir: Path, engines_dir: Path | None = None) -> bool:
    """True when the engines cache matches this model, format and OpenVINO version, with its files present."""
    engines_dir = engines_dir or engines_dir_for(model_dir)
    m = read_engines_manifest(engines_dir)
    model = read_manifest(model_dir) or {}
    return (
        m is not None
        and m.get("model_created_at") == model.get("created_at")
        and m.get("openvino") == _version("openvino")
        and m.get("calibration_version") == CALIBRATION_VERSION
        and all(ir_path(engines_dir, p).is_file() for p in ("fp32", "int8"))
    )


def measured_here(engines_dir: Path) -> bool:
    """True when the manifest's measurements were taken on this machine with this measuring recipe."""
    m = read_engines_manifest(engines_dir) or {}
    return (
        m.get("machine") == machine()
        and m.get("measure_version") == MEASURE_VERSION
        and bool(m.get("measured"))
    )


def prepare_engines(
    model_dir: Path,
    *,
    engines_dir: Path | None = None,
    force: bool = False,
    calibration_size: int = CALIBRATION_SIZE,
    measure_passages: int = MEASURE_PASSAGES,
    measure_queries: int = MEASURE_QUERIES,
    progress: Progress | None = None,
) -> Path:
    """Convert, quantise and measure the engines of `model_dir` into `engines_dir` (default beside it).

    Idempotent and atomic: a complete cache measured on this machine is left alone; one copied
    from another machine (or measured by an older recipe) is only measured again, its manifest
    replaced by a rename; anything else is rebuilt in a temporary sibling and renamed into place.
    """
    engines_dir = (engines_dir or engines_dir_for(model_dir)).resolve()
    if not force and engines_prepared(model_dir, engines_dir) and measured_here(engines_dir):
        _say(progress, 1.0, "engines already prepared")
        return engines_dir
    engines_dir.parent.mkdir(parents=True, exist_ok=True)
    texts = calibration_texts(measure_passages, measure_queries)
    with _lock(engines_dir):
        if not force and engines_prepared(model_dir, engines_dir):
            if not measured_here(engines_dir):
                manifest = read_engines_manifest(engines_dir) or {}
                ref = load_embedder(model_dir, engine="torch", precision="fp32")
                _measure_all(engines_dir, manifest, model_dir, ref, texts, progress)
            _say(progress, 1.0, "engines already prepared")
            return engines_dir
        tmp = Path(tempfile.mkdtemp(prefix=f".{engines_dir.name}.tmp-", dir=engines_dir.parent))
        try:
            _build_into(tmp, model_dir, texts, calibration_size, progress)
            for item in tmp.rglob("*"):
                item.chmod(0o755 if item.is_dir() else 0o644)
            tmp.chmod(0o755)
            _swap_into_place(tmp, engines_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _say(progress, 1.0, "engines prepared")
    return engines_dir


def _build_into(
    tmp: Path, model_dir: Path, texts: CalibrationTexts, calibration_size: int, progress: Progress | None
) -> None:
    """Convert, quantise, then measure every candidate against torch fp32 and write the manifest."""
    _say(progress, 0.0, "loading torch fp32 (the reference)")
    ref = load_embedder(model_dir, engine="torch", precision="fp32")
    assert isinstance(ref._forward, TorchForward)
    _say(progress, 0.05, "converting to OpenVINO")
    fp32_xml = ir_path(tmp, "fp32")
    fp32_xml.parent.mkdir(parents=True)
    convert_to_openvino(ref._forward.network, fp32_xml)
    _say(
        progress,
        0.15,
        f"calibrating int8 on {min(calibration_size, len(texts.calibrate)) + 2 * len(SHORT_TEXTS)} texts (NNCF)",
    )
    samples = []
    short = [(t, q) for t in SHORT_TEXTS for q in (True, False)]
    for text, is_query in texts.calibrate[:calibration_size] + short:
        ids = ref.token_ids([text], query=is_query)[0][: ref.max_tokens]
        arr = np.asarray([ids], dtype=np.int64)
        samples.append((arr, np.ones_like(arr)))
    int8_xml = ir_path(tmp, "int8")
    int8_xml.parent.mkdir(parents=True)
    quantize_openvino(fp32_xml, int8_xml, samples)
    manifest: dict[str, Any] = {
        "format": ENGINES_FORMAT,
        "model_id": ref.model_id,
        "model_created_at": (read_manifest(model_dir) or {}).get("created_at"),
        "openvino": _version("openvino"),
        "nncf": _version("nncf"),
        "calibration_texts": len(samples),
        "calibration_version": CALIBRATION_VERSION,
    }
    _measure_all(tmp, manifest, model_dir, ref, texts, progress)


def _measure_all(
    engines_dir: Path,
    manifest: dict[str, Any],
    model_dir: Path,
    ref: Embedder,
    texts: CalibrationTexts,
    progress: Progress | None,
) -> None:
    """Time every candidate against torch fp32 (`ref`) and record the rows and auto's pick in the manifest."""
    manifest = {**manifest, "machine": machine(), "measure_version": MEASURE_VERSION, "measured": []}
    if not (engines_dir / ENGINES_MANIFEST).is_file():
        _write_manifest(engines_dir, manifest)  # loading an OpenVINO candidate below needs one
    ref_p = ref.encode_passages(texts.passages + texts.reference)
    ref_q = ref.encode_queries(texts.queries + texts.reference)
    rows = []
    for i, (engine, precision) in enumerate(CANDIDATES):
        _say(progress, 0.6 + 0.4 * i / len(CANDIDATES), f"measuring {engine} {precision}")
        emb = ref if (engine, precision) == ("torch", "fp32") else None
        emb = emb or load_embedder(model_dir, engine=engine, precision=precision, engines_dir=engines_dir)
        rows.append(measure(emb, texts, ref_p, ref_q))
        del emb
        gc.collect()
    manifest["measured"] = rows
    manifest["load_average"] = [round(x, 2) for x in os.getloadavg()]
    manifest["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    auto = choose("auto", "auto", manifest, fallback_precision="fp32")
    # What auto picked then; each load decides again, with the faithful.json shipped at that time.
    manifest["auto_when_measured"] = {"engine": auto.engine, "precision": auto.precision}
    _write_manifest(engines_dir, manifest)


def measure(
    emb: Embedder, texts: CalibrationTexts, ref_p: np.ndarray[Any, Any], ref_q: np.ndarray[Any, Any]
) -> dict[str, Any]:
    """Passages/s, one question's latency, and min cosine to torch fp32 over every measured and reference text."""
    passages, queries = texts.passages, texts.queries
    emb.encode_passages(passages[:4])  # warm-up: first-use compilation and allocation
    emb.encode_queries(queries[:2])
    t0 = time.perf_counter()
    vp = emb.encode_passages(passages)
    seconds = time.perf_counter() - t0
    times, vq = [], []
    for q in queries:
        t = time.perf_counter()
        vq.append(emb.encode_queries([q])[0])
        times.append(time.perf_counter() - t)
    vp = np.vstack([vp, emb.encode_passages(texts.reference)])
    vq = [*vq, *emb.encode_queries(texts.reference)]
    cos = min(float(np.min(np.sum(vp * ref_p, axis=1))), float(np.min(np.sum(np.stack(vq) * ref_q, axis=1))))
    return {
        "engine": emb.engine,
        "precision": emb.precision,
        "passages_per_s": round(len(passages) / seconds, 2),
        "query_p50_ms": round(1000 * statistics.median(times), 2),
        "min_cosine": round(cos, 5),
    }


def engine_summary(model_dir: Path, engines_dir: Path | None = None) -> str:
    """One line per measured candidate and the one `auto` picks, for the CLI."""
    m = read_engines_manifest(engines_dir or engines_dir_for(model_dir))
    if m is None:
        return "engines: not prepared"
    auto = choose("auto", "auto", m, fallback_precision="fp32")
    lines = [f"engines measured on {m.get('machine')} (load average {m.get('load_average')}):"]
    for r in m.get("measured", []):
        lines.append(
            f"  {r['engine']}-{r['precision']}: {r['passages_per_s']} passages/s, "
            f"question {r['query_p50_ms']} ms, min cosine to fp32 {r['min_cosine']}"
        )
    lines.append(f"auto: {auto.name} ({auto.reason})")
    return "\n".join(lines)


def _write_manifest(engines_dir: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest through a temporary file and a rename."""
    path = engines_dir / ENGINES_MANIFEST
    part = path.with_suffix(".part")
    part.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(part, path)


def _version(dist: str) -> str:
    """An installed distribution's version ('' when missing)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _say(progress: Progress | None, frac: float, msg: str) -> None:
    if progress is not None:
        progress(frac, msg)


@contextmanager
def _lock(engines_dir: Path) -> Iterator[None]:
    """Serialise concurrent prepares of the same engines directory."""
    with (engines_dir.parent / f".{engines_dir.name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
