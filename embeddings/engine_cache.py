"""Where prepared engines live, what their manifest says, and which engine and precision `auto` picks.

`citesearch model prepare` writes, beside the model, ``engines/openvino-fp32/model.xml`` (the
converted network; bf16 is the same file compiled at bf16), ``engines/openvino-int8/model.xml``
(NNCF static int8) and ``engines/citesearch-engines.json``: what was measured on this machine for
every candidate (passages/s, one question's latency, min cosine to torch fp32). `auto` picks the
fastest candidate that is faithful: min cosine ≥ MIN_COSINE measured here, and an XQuAD MRR@10 gate
passed in bench/engines.py and shipped in ``faithful.json`` (the evaluation set is not in a clone).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citesearch.embeddings.errors import ModelError
from citesearch.embeddings.prepare import PREPARE_HINT

ENGINES_DIRNAME = "engines"
ENGINES_MANIFEST = "citesearch-engines.json"
ENGINES_FORMAT = "1"
ENGINE_CHOICES = ("auto", "torch", "openvino")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "int8")
CANDIDATES = (
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
)
"""What prepare measures and `auto` may pick (torch int8 is dynamic quantisation: it cost 11.6 MRR points)."""
MIN_COSINE = 0.995
MAX_MRR_DROP = 0.5
FAITHFUL = Path(__file__).resolve().parent / "faithful.json"
CALIBRATION = Path(__file__).resolve().parent / "data" / "calibration.jsonl"


def engines_dir_for(model_dir: Path) -> Path:
    """The engines cache of a prepared model directory."""
    return model_dir / ENGINES_DIRNAME


def ir_path(engines_dir: Path, precision: str) -> Path:
    """The OpenVINO IR serving `precision`: fp32 and bf16 share one file (bf16 is a compile option)."""
    return engines_dir / ("openvino-int8" if precision == "int8" else "openvino-fp32") / "model.xml"


def read_engines_manifest(engines_dir: Path) -> dict[str, Any] | None:
    """The engines manifest, or None when absent, unreadable or of another format."""
    try:
        data = json.loads((engines_dir / ENGINES_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != ENGINES_FORMAT:
        return None
    return data


def read_faithful(path: Path = FAITHFUL) -> dict[str, Any]:
    """The MRR gate results shipped with the code ({} when missing)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def mrr_passed(engine: str, precision: str, model_id: str, faithful: dict[str, Any]) -> bool:
    """True when bench/engines.py recorded this combination within MAX_MRR_DROP of fp32 for this model."""
    if (engine, precision) == ("torch", "fp32"):
        return True  # the reference itself
    if faithful.get("model_id") != model_id:
        return False
    entry = faithful.get("results", {}).get(f"{engine}-{precision}")
    return isinstance(entry, dict) and entry.get("passed") is True


@dataclass(frozen=True)
class EngineChoice:
    """The engine and precision a model will run at, and why (shown in the start-up log)."""

    engine: str
    precision: str
    reason: str

    @property
    def name(self) -> str:
        """`engine-precision`, as /v1/stats shows it."""
        return f"{self.engine}-{self.precision}"


def _speed(row: dict[str, Any], base: dict[str, Any]) -> float:
    """Geometric mean of the passages/s and the one-question speed-ups over torch fp32: ingest and search both count."""
    pps = float(row["passages_per_s"]) / max(float(base["passages_per_s"]), 1e-9)
    query = float(base["query_p50_ms"]) / max(float(row["query_p50_ms"]), 1e-9)
    return math.sqrt(pps * query)


def faithful_rows(manifest: dict[str, Any], faithful: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured candidates that pass both gates, fastest first."""
    rows = [r for r in manifest.get("measured", []) if isinstance(r, dict)]
    base = next((r for r in rows if (r.get("engine"), r.get("precision")) == ("torch", "fp32")), None)
    if base is None:
        return []
    model_id = str(manifest.get("model_id", ""))
    ok = [
        r
        for r in rows
        if float(r.get("min_cosine", 0.0)) >= MIN_COSINE
        and mrr_passed(str(r["engine"]), str(r["precision"]), model_id, faithful)
    ]
    return sorted(ok, key=lambda r: -_speed(r, base))


def _check(engine: str, precision: str) -> tuple[str, str]:
    """Normalised settings; ModelError naming the accepted values otherwise."""
    e, p = (engine.strip().lower() or "auto"), (precision.strip().lower() or "auto")
    if e not in ENGINE_CHOICES:
        raise ModelError(f"embedding engine {engine!r}: expected one of {', '.join(ENGINE_CHOICES)}")
    if p not in PRECISION_CHOICES:
        raise ModelError(f"embedding precision {precision!r}: expected one of {', '.join(PRECISION_CHOICES)}")
    return e, p


def choose(
    engine: str,
    precision: str,
    manifest: dict[str, Any] | None,
    *,
    fallback_precision: str,
    faithful: dict[str, Any] | None = None,
) -> EngineChoice:
    """Resolve the engine and precision settings (each `auto` or a value) against what prepare measured.

    `auto` means the fastest faithful candidate within the other setting; without a manifest (a hub
    model, or engines not prepared) `auto` falls back to torch at `fallback_precision`.
    An explicit OpenVINO setting needs prepared engines.
    """
    e, p = _check(engine, precision)
    if e == "openvino" and manifest is None:
        raise ModelError(f"the OpenVINO engine is not prepared for this model: {PREPARE_HINT}")
    if e != "auto" and p != "auto":
        return EngineChoice(e, p, "set")
    if manifest is None:
        return EngineChoice("torch", fallback_precision if p == "auto" else p, "no prepared engines")
    rows = [
        r
        for r in faithful_rows(manifest, read_faithful() if faithful is None else faithful)
        if e in ("auto", r["engine"]) and p in ("auto", r["precision"])
    ]
    if rows:
        best = rows[0]
        why = f"fastest faithful of {len(manifest.get('measured', []))} measured"
        if manifest.get("machine") != machine():
            why += f" on another machine ({manifest.get('machine')}): run `citesearch model prepare` to measure here"
        return EngineChoice(str(best["engine"]), str(best["precision"]), why)
    if e == "auto":  # an explicit precision nothing faithful runs at: the library's own path
        return EngineChoice("torch", p, "no faithful candidate at this precision")
    return EngineChoice(e, "fp32", "no faithful candidate measured; fp32")


def machine() -> str:
    """A short description of this CPU: model name, usable cores and the flags that matter here."""
    name, flags = "unknown CPU", set[str]()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name") and name == "unknown CPU":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    interesting = [f for f in ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in flags]
    return f"{name}, {len(os.sched_getaffinity(0))} cores, {' '.join(interesting) or 'no avx512'}"
