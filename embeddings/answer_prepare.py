"""Build and measure the answer-sentence model's engines at `citesearch model prepare` (offline).

The shipped delta (embeddings/answer/) and the prepared embedding model make the torch network;
it is converted to an OpenVINO IR (fp32 weights stored as fp16) and quantised to int8 with NNCF
(calibrated on the bundled train-title pairs). Each candidate is measured against torch fp32 on
the bundled measuring groups (tune titles): the largest difference of the answer probability, how
often the best sentence of a group is the same, and a pass's latency. `auto` serves the fastest
faithful one. Built in a temporary sibling and renamed into place, like the embedder's engines.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from citesearch.embeddings.answer_model import (
    COS_CENTER,
    DELTA_FILE,
    MANIFEST,
    PREPARED_DIRNAME,
    SHIPPED_DIR,
    AnswerConfig,
    AnswerModel,
    OpenVINOAnswerForward,
    PairEncoder,
    TorchAnswerForward,
    cos_scale_of,
    load_network,
)
from citesearch.embeddings.engine_cache import machine
from citesearch.embeddings.errors import ModelError
from citesearch.embeddings.prepare import PREPARE_HINT, _swap_into_place, read_manifest, sha256_file
from citesearch.embeddings.progress import Progress

FORMAT = "1"
CANDIDATES = (("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8w"), ("openvino", "int8"))
"""fp32; bf16 (the fp32 IR computed in bf16 where the CPU has it); int8w (weights int8, activations in
floating point: NNCF weight compression); int8 (static: weights and activations, NNCF calibrated)."""
MAX_PROBABILITY_DIFF = 0.05
"""An engine is faithful when no measured probability differs from torch fp32's by more than this..."""
MIN_TOP1_AGREEMENT = 0.97
"""...and the best sentence of at least this share of the measured groups is the same."""
CALIBRATION_PAIRS = SHIPPED_DIR / "calibration.jsonl"
_CORES = max(1, len(os.sched_getaffinity(0)))


def prepared_dir(models_dir: Path) -> Path:
    return models_dir / PREPARED_DIRNAME


def _ir(root: Path, precision: str) -> Path:
    folder = {"int8": "openvino-int8", "int8w": "openvino-int8w"}.get(precision, "openvino-fp32")
    return root / folder / "model.xml"


def read_answer_manifest(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _identity(model_dir: Path) -> dict[str, Any]:
    """What the prepared engines must match: the shipped delta and the embedding model they were built from."""
    return {
        "format": FORMAT,
        "delta_sha256": sha256_file(SHIPPED_DIR / DELTA_FILE),
        "model_created_at": (read_manifest(model_dir) or {}).get("created_at"),
        "openvino": _version("openvino"),
    }


def answer_prepared(model_dir: Path, root: Path) -> bool:
    m = read_answer_manifest(root)
    ident = _identity(model_dir)
    return (
        m is not None
        and all(m.get(k) == v for k, v in ident.items())
        and all(_ir(root, p).is_file() for _, p in CANDIDATES)
    )


def _bundled() -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """(calibration pairs, measuring groups) shipped beside the delta."""
    calibrate: list[tuple[str, str]] = []
    groups: list[dict[str, Any]] = []
    with CALIBRATION_PAIRS.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["kind"] == "pair":
                calibrate.append((row["question"], row["sentence"]))
            elif row["kind"] == "group":
                groups.append(row)
    return calibrate, groups


def prepare_answer_model(
    model_dir: Path, models_dir: Path, *, force: bool = False, progress: Progress | None = None
) -> Path:
    """Build the answer model's engines under `<models_dir>/answer-sentence` (idempotent, atomic)."""
    root = prepared_dir(models_dir).resolve()
    if not force and answer_prepared(model_dir, root):
        _say(progress, 1.0, "answer model already prepared")
        return root
    if not (SHIPPED_DIR / DELTA_FILE).is_file():
        raise ModelError("the answer-sentence model's files are missing from this installation (reinstall)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        _build_into(tmp, model_dir, progress)
        for item in tmp.rglob("*"):
            item.chmod(0o755 if item.is_dir() else 0o644)
        tmp.chmod(0o755)
        _swap_into_place(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(progress, 1.0, "answer model prepared")
    return root


def _build_into(tmp: Path, model_dir: Path, progress: Progress | None) -> None:
    import openvino as ov
    import torch

    _say(progress, 0.0, "answer model: loading the network")
    net = load_network(model_dir)
    pairs = PairEncoder.from_model_dir(model_dir)
    calibrate, groups = _bundled()

    class Read(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner.head(self.inner.pooled(input_ids, attention_mask)).squeeze(-1)

    _say(progress, 0.1, "answer model: converting to OpenVINO")
    fp32 = _ir(tmp, "fp32")
    fp32.parent.mkdir(parents=True)
    example = torch.ones((2, 16), dtype=torch.long)
    with torch.no_grad():
        model = ov.convert_model(
            Read(net).eval(),
            example_input={"input_ids": example, "attention_mask": example},
            input=[("input_ids", [-1, -1], ov.Type.i64), ("attention_mask", [-1, -1], ov.Type.i64)],
        )
    ov.save_model(model, str(fp32), compress_to_fp16=True)
    _say(progress, 0.3, f"answer model: calibrating int8 on {len(calibrate)} pairs (NNCF)")
    from citesearch.embeddings.engines import quantize_openvino

    samples = [pairs.batch([p]) for p in calibrate]
    int8 = _ir(tmp, "int8")
    int8.parent.mkdir(parents=True)
    quantize_openvino(fp32, int8, samples)
    _say(progress, 0.5, "answer model: int8 weights (NNCF weight compression)")
    import nncf

    weights = _ir(tmp, "int8w")
    weights.parent.mkdir(parents=True)
    compressed = nncf.compress_weights(
        ov.Core().read_model(str(fp32)), mode=nncf.CompressWeightsMode.INT8_ASYM
    )
    ov.save_model(compressed, str(weights), compress_to_fp16=False)
    manifest: dict[str, Any] = {**_identity(model_dir), "calibration_pairs": len(samples)}
    config = AnswerConfig.read()
    scale = cos_scale_of()
    ref = AnswerModel(TorchAnswerForward(net), pairs, config, scale)
    ref_logits = [ref.read(g["question"], g["sentences"]) for g in groups]
    rows = [_measure(ref, groups, ref_logits, config)]
    for i, (engine, precision) in enumerate(CANDIDATES):
        _say(progress, 0.6 + 0.4 * i / len(CANDIDATES), f"answer model: measuring {engine} {precision}")
        cand = AnswerModel(
            OpenVINOAnswerForward(_ir(tmp, precision), precision, _CORES), pairs, config, scale
        )
        rows.append(_measure(cand, groups, ref_logits, config))
    manifest.update(
        machine=machine(),
        measured=rows,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_average=[round(x, 2) for x in os.getloadavg()],
    )
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _measure(
    model: AnswerModel, groups: list[dict[str, Any]], ref_logits: list[Any], config: AnswerConfig
) -> dict[str, Any]:
    """Largest probability difference and best-sentence agreement against torch fp32, and pass latency."""
    model.read(groups[0]["question"], groups[0]["sentences"])  # warm-up
    diffs, agree, times = [], [], []
    for g, ref in zip(groups, ref_logits, strict=True):
        t = time.perf_counter()
        got = model.read(g["question"], g["sentences"])
        times.append(time.perf_counter() - t)
        cal = config.calibration
        cos = model.cos_scale * (np.asarray(g["cosines"], dtype=np.float32) - COS_CENTER)
        p_ref = cal.probabilities(ref + cos, g["qlang"], g["slang"])
        p_got = cal.probabilities(got + cos, g["qlang"], g["slang"])
        diffs.append(float(np.max(np.abs(p_ref - p_got))))
        agree.append(int(np.argmax(got)) == int(np.argmax(ref)))
    return {
        "engine": model.forward.engine,
        "precision": model.forward.precision,
        "max_probability_diff": round(max(diffs), 5),
        "top1_agreement": round(float(np.mean(agree)), 4),
        "group_p50_ms": round(1000 * statistics.median(times), 2),
    }


def answer_summary(root: Path) -> str:
    """One line per measured candidate and the one served, for the CLI."""
    m = read_answer_manifest(root)
    if m is None:
        return "answer model: not prepared"
    lines = [f"answer model engines measured on {m.get('machine')} (load average {m.get('load_average')}):"]
    for r in m.get("measured", []):
        lines.append(
            f"  {r['engine']}-{r['precision']}: {r['group_p50_ms']} ms a passage, largest probability "
            f"difference to torch fp32 {r['max_probability_diff']}, same best sentence {r['top1_agreement']:.1%}"
        )
    engine, precision = choose_answer_engine(root)
    lines.append(f"answer model serves: {engine}-{precision}")
    return "\n".join(lines)


def choose_answer_engine(root: Path, engine: str = "auto") -> tuple[str, str]:
    """(engine, precision) to serve: `torch`, or the fastest faithful OpenVINO candidate measured."""
    if engine == "torch":
        return "torch", "fp32"
    m = read_answer_manifest(root)
    if m is None:
        raise ModelError(f"the answer-sentence model is not prepared: {PREPARE_HINT}")
    faithful = [
        r
        for r in m.get("measured", [])
        if r["engine"] == "openvino"
        and r["max_probability_diff"] <= MAX_PROBABILITY_DIFF
        and r["top1_agreement"] >= MIN_TOP1_AGREEMENT
    ]
    if not faithful:
        return "openvino", "fp32"
    best = min(faithful, key=lambda r: r["group_p50_ms"])
    return "openvino", str(best["precision"])


def load_answer_model(model_dir: Path, models_dir: Path, engine: str = "auto") -> AnswerModel:
    """The answer model on the engine `engine` asks for (auto: as prepare measured); one per process
    for the same arguments (it holds no state a caller changes, and its passes are serialised)."""
    return _load(str(model_dir.resolve()), str(models_dir.resolve()), engine)


@functools.lru_cache(maxsize=4)
def _load(model_dir_s: str, models_dir_s: str, engine: str) -> AnswerModel:
    model_dir, models_dir = Path(model_dir_s), Path(models_dir_s)
    root = prepared_dir(models_dir)
    config = AnswerConfig.read()
    if not (model_dir / "tokenizer.json").is_file():
        raise ModelError(f"the answer-sentence model has no base model to build on: {PREPARE_HINT}")
    pairs = PairEncoder.from_model_dir(model_dir)
    name, precision = choose_answer_engine(root, engine)
    if name == "torch":
        return AnswerModel(TorchAnswerForward(load_network(model_dir)), pairs, config, cos_scale_of())
    if not answer_prepared(model_dir, root):
        raise ModelError(f"the answer-sentence model is not prepared for this model: {PREPARE_HINT}")
    forward = OpenVINOAnswerForward(_ir(root, precision), precision, _CORES)
    return AnswerModel(forward, pairs, config, cos_scale_of())


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _say(progress: Progress | None, frac: float, msg: str) -> None:
    if progress is not None:
        progress(frac, msg)
