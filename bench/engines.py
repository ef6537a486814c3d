"""Inference engines side by side in one run: the plain library (sentence-transformers, torch bf16) vs ours.

Sections (all by default):
- speed: per engine and precision, in one process and interleaved rounds so machine load hits all
  alike: passages/s over XQuAD paragraphs (articles the int8 calibration never saw), one question's
  p50/p95, min cosine to torch fp32, RSS (each engine alone in a child process);
- mrr: XQuAD MRR@10, dense, through the real search code (bench.quality), cross-lingual (L→en, en→zh)
  and mixed (seed 0), a sample of questions per language; `--write-faithful` records which
  combinations stay within MAX_MRR_DROP of torch fp32 in embeddings/faithful.json (what `auto` reads);
- http: the real app (`citesearch serve`, engine auto) over loopback: ingest passages/s and search
  p50, against the reference's encode figures measured in the same run (targets 1.8× and 0.75×);
- peer: `bench.perf --sections peer --quick` (txtai), when txtai is installed.

Run: `.venv/bin/python -m bench.engines [--sections speed,mrr,http,peer] [--sample 200] [--write-faithful]`.
Writes bench/results/engines.json and engines.md. Record the load average: figures are ratios within one run.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench import perf
from bench.perf import machine, query_shapes, rss_bytes, serve
from bench.quality import (
    EVAL,
    CachingEmbedder,
    Outcome,
    build,
    evaluate,
    load,
    safe_id,
    settings,
    summarise,
)
from citesearch.embeddings import Embedder, load_embedder
from citesearch.embeddings.engine_cache import CANDIDATES, FAITHFUL, MAX_MRR_DROP, MIN_COSINE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CALIBRATION_TITLES = set(sorted({json.loads(x)["title"] for x in (EVAL / "corpus.jsonl").open()})[::6])


def log(msg: str) -> None:
    print(f"[engines {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(values: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(values, q)), 2)


def texts(n_passages: int, n_questions: int) -> tuple[list[str], list[str]]:
    """English XQuAD paragraphs and questions (12 languages) from articles outside the calibration set."""
    paras: list[str] = []
    for line in (EVAL / "corpus.jsonl").open(encoding="utf-8"):
        d = json.loads(line)
        if d["language"] == "en" and d["title"] not in CALIBRATION_TITLES:
            paras += [d["text"][p["start"] : p["end"]].strip() for p in d["paragraphs"]]
    _, qs = load()
    rnd = random.Random(7)
    questions = [q.text for q in rnd.sample(qs, n_questions)]
    return paras[:n_passages], questions


class Reference:
    """sentence-transformers with torch in bf16 on the same model directory: the plain library."""

    name = "sentence-transformers-torch-bf16"

    def __init__(self, path: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.torch = torch
        self.st = SentenceTransformer(path, device="cpu", local_files_only=True).eval().to(torch.bfloat16)

    def _threads(self) -> None:
        # The library's own default, every call: our torch engine sets the process-wide count to 1
        # after a question, which ran the library on one core in earlier runs of this bench.
        self.torch.set_num_threads(len(os.sched_getaffinity(0)))

    def encode_passages(self, t: list[str]) -> Any:
        self._threads()
        return self.st.encode(["passage: " + x for x in t], batch_size=16, normalize_embeddings=True)

    def encode_queries(self, t: list[str]) -> Any:
        self._threads()
        return self.st.encode(["query: " + x for x in t], normalize_embeddings=True)


def time_one(enc: Any, passages: list[str], questions: list[str]) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    enc.encode_passages(passages)
    pps = len(passages) / (time.perf_counter() - t0)
    lat = []
    for q in questions:
        t = time.perf_counter()
        enc.encode_queries([q])
        lat.append(time.perf_counter() - t)
    return pps, lat


def section_speed(args: argparse.Namespace, out: dict[str, Any]) -> None:
    passages, questions = texts(args.passages, args.questions)
    ref_lib = Reference(str(args.model))
    encoders: dict[str, Any] = {ref_lib.name: ref_lib}
    for engine, precision in CANDIDATES:
        encoders[f"{engine}-{precision}"] = load_embedder(args.model, engine=engine, precision=precision)
    base: Embedder = encoders["torch-fp32"]
    vp, vq = base.encode_passages(passages), base.encode_queries(questions)
    cos = {}
    for name, enc in encoders.items():
        p = np.asarray(enc.encode_passages(passages), dtype=np.float32)
        q = np.asarray(enc.encode_queries(questions), dtype=np.float32)
        cos[name] = round(min(float(np.min(np.sum(p * vp, 1))), float(np.min(np.sum(q * vq, 1)))), 5)
        if isinstance(enc, Embedder):
            log(f"{name}: question copies (tokens, threads) {enc.prepare_questions()}")
    pps: dict[str, list[float]] = defaultdict(list)
    lat: dict[str, list[float]] = defaultdict(list)
    la = [load_avg()]
    for r in range(args.rounds):
        order = list(encoders) if r % 2 == 0 else list(reversed(encoders))
        for name in order:
            x, ys = time_one(encoders[name], passages, questions)
            pps[name].append(x)
            lat[name] += ys
        la.append(load_avg())
        log(f"speed round {r + 1}/{args.rounds} done, load {la[-1]}")
    rows = {}
    for name in encoders:
        rows[name] = {
            "passages_per_s": round(statistics.median(pps[name]), 2),
            "passages_per_s_rounds": [round(x, 2) for x in pps[name]],
            "query_p50_ms": pct(lat[name], 50),
            "query_p95_ms": pct(lat[name], 95),
            "min_cosine_to_fp32": cos[name],
        }
    del encoders, base
    gc.collect()
    for name in rows:
        rows[name]["rss_mb"] = rss_child(args.model, name, passages[:32])
    out["speed"] = {
        "passages": len(passages),
        "mean_tokens": None,
        "questions": len(questions),
        "rounds": args.rounds,
        "load_average": la,
        "rows": rows,
    }


def rss_child(model: Path, name: str, passages: list[str]) -> float:
    """RSS after loading one engine alone and embedding 32 passages, in a fresh process."""
    res = subprocess.run(
        [sys.executable, "-m", "bench.engines", "--rss-worker", name, "--model", str(model)],
        input=json.dumps(passages),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    for line in res.stdout.splitlines():
        if line.startswith("RSS "):
            return float(line.split()[1])
    log(f"rss worker {name} failed: {res.stderr[-500:]}")
    return float("nan")


def rss_worker(name: str, model: Path) -> None:
    passages = json.loads(sys.stdin.read())
    enc: Any
    if name.startswith("sentence-transformers"):
        enc = Reference(str(model))
    else:
        engine, precision = name.split("-")
        enc = load_embedder(model, engine=engine, precision=precision)
    enc.encode_passages(passages)
    enc.encode_queries(["a question?"])
    if isinstance(enc, Embedder):  # with its question copies compiled, as when serving
        enc.prepare_questions()
    print(f"RSS {rss_bytes() / 2**20:.0f}", flush=True)


def mrr_run(emb: Embedder, sample: int) -> dict[str, float]:
    """Dense MRR@10: cross-lingual (mean over L→en and en→zh) and mixed (seed 0)."""
    docs, questions = load()
    qids = set(random.Random(0).sample(sorted({q.qid for q in questions}), sample))
    questions = [q for q in questions if q.qid in qids]
    cache = CachingEmbedder(emb)
    per: dict[str, dict[str, list[Outcome]]] = {}
    for setting in settings(docs, questions, {"crosslingual", "mixed"}, seeds=(0,)):
        svc, _ = build(cache, setting.docs, setting.neutral)
        try:
            per[setting.name] = evaluate(svc, cache, setting.questions, ["dense"])["dense"]
        finally:
            svc.close()
    cross = [summarise(r)["MRR@10"] for r in per["crosslingual->en"].values()] + [
        summarise(per["crosslingual->zh"]["en"])["MRR@10"]
    ]
    mixed = summarise([r for ranks in per["mixed-seed0"].values() for r in ranks])["MRR@10"]
    return {"crosslingual": round(statistics.mean(cross), 2), "mixed": round(mixed, 2)}


def section_mrr(args: argparse.Namespace, out: dict[str, Any]) -> None:
    rows: dict[str, Any] = json.loads(args.mrr_known) if args.mrr_known else {}
    wanted = args.candidates.split(",") if args.candidates else [f"{e}-{p}" for e, p in CANDIDATES]
    for engine, precision in CANDIDATES:
        name = f"{engine}-{precision}"
        if name in rows or name not in wanted:
            continue
        t0 = time.perf_counter()
        emb = load_embedder(args.model, engine=engine, precision=precision)
        rows[name] = mrr_run(emb, args.sample)
        del emb
        gc.collect()
        log(f"mrr {name}: {rows[name]} ({time.perf_counter() - t0:.0f}s, load {load_avg()})")
    if "torch-fp32" not in rows:
        out["mrr_partial"] = {**out.get("mrr_partial", {}), **rows}
        return
    base = rows["torch-fp32"]
    for r in rows.values():
        r["drop"] = {k: round(base[k] - r[k], 2) for k in ("crosslingual", "mixed")}
        r["passed"] = all(v <= MAX_MRR_DROP for v in r["drop"].values())
    out["mrr"] = {"sample_questions_per_language": args.sample, "load_average": load_avg(), "rows": rows}
    if args.write_faithful:
        model_id = load_embedder(args.model, engine="openvino", precision="fp32").model_id
        FAITHFUL.write_text(
            json.dumps(
                {
                    "about": "XQuAD MRR@10 gate of `auto` (bench/engines.py --sections mrr --write-faithful): dense, "
                    f"cross-lingual and mixed, {args.sample} questions per language; passed = within "
                    f"{MAX_MRR_DROP} of torch fp32 in both. The cosine gate (>= {MIN_COSINE}) is measured "
                    "again by `citesearch model prepare` on each machine.",
                    "model_id": model_id,
                    "machine": out["machine"]["cpu"] if "cpu" in out["machine"] else str(out["machine"]),
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "results": rows,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        log(f"wrote {FAITHFUL}")


def _request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def section_http(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The real server with engine auto: ingest XQuAD English articles, then single questions."""
    passages, questions = texts(args.passages, args.questions)
    ref = Reference(str(args.model))
    ref.encode_passages(passages[:8])
    ref_pps, ref_lat = time_one(ref, passages, questions)
    del ref
    gc.collect()
    docs, _ = load()
    arts = [
        {"id": safe_id(d.id), "title": f"Article {i}", "text": d.text, "language": d.language}
        for i, d in enumerate(
            d for d in docs.values() if d.language == "en" and d.title not in CALIBRATION_TITLES
        )
    ]
    # This checkout's code, not whatever `citesearch` script the venv has installed.
    perf._serve_command = lambda: [sys.executable, "-m", "citesearch.api.cli"]
    with tempfile.TemporaryDirectory(prefix="citesearch-engines-") as tmp:
        env_before = os.environ.get("CITESEARCH_MODEL")
        os.environ["CITESEARCH_MODEL"] = str(args.model)
        if args.http_engine:  # otherwise the server's own `auto`
            engine, precision = args.http_engine.split("-")
            os.environ["CITESEARCH_EMBED_ENGINE"], os.environ["CITESEARCH_EMBED_PRECISION"] = (
                engine,
                precision,
            )
        try:
            with serve(Path(tmp) / "data", Path(tmp) / "serve.log") as server:
                _, stats0 = _request(server.port, "GET", "/v1/stats")
                t0 = time.perf_counter()
                for i in range(0, len(arts), 8):
                    status, _ = _request(server.port, "POST", "/v1/articles", {"articles": arts[i : i + 8]})
                    assert status < 300, status
                ingest_s = time.perf_counter() - t0
                _, stats = _request(server.port, "GET", "/v1/stats")
                for q in questions:  # warm (the question copies were compiled before ready)
                    _request(server.port, "POST", "/v1/search", {"query": q, "top_k": 5})
                shapes = query_shapes(server.port)
                lat = []
                for q in questions:
                    t = time.perf_counter()
                    status, _ = _request(server.port, "POST", "/v1/search", {"query": q, "top_k": 5})
                    lat.append(time.perf_counter() - t)
                    assert status == 200
                rss = server.rss() / 2**20
                _, stats_end = _request(server.port, "GET", "/v1/stats")
        finally:
            if env_before is None:
                os.environ.pop("CITESEARCH_MODEL", None)
            else:
                os.environ["CITESEARCH_MODEL"] = env_before
    http_pps = stats["passages"] / ingest_s
    search_p50 = pct(lat, 50)
    ref_p50 = pct(ref_lat, 50)
    out["http"] = {
        "engine": stats.get("engine", stats0.get("engine")),
        "articles": len(arts),
        "passages": stats["passages"],
        "ingest_passages_per_s": round(http_pps, 2),
        "search_p50_ms": search_p50,
        "search_p95_ms": pct(lat, 95),
        "server_rss_mb": round(rss),
        "query_threads_at_end": stats_end.get("query_threads"),
        "query_shapes": shapes,
        "reference_encode_passages_per_s": round(ref_pps, 2),
        "reference_encode_query_p50_ms": ref_p50,
        "ingest_ratio": round(http_pps / ref_pps, 2),
        "ingest_target": 1.8,
        "search_ratio": round(search_p50 / ref_p50, 2),
        "search_target": 0.75,
        "load_average": load_avg(),
    }
    log(f"http: {out['http']}")


def section_shapes(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """RSS of the OpenVINO bf16 engine over passes of random (rows, width) shapes vs the Embedder's buckets.

    oneDNN caches kernels per input shape: with torch, 300 random shapes grew RSS by 714 MB.
    """
    res: dict[str, Any] = {}
    rnd = random.Random(3)
    shapes = [(rnd.randint(1, 32), rnd.randint(4, 512)) for _ in range(args.shapes)]
    for precision in ("bf16",):
        for bucketed in (False, True):
            emb = load_embedder(args.model, engine="openvino", precision=precision)
            fwd = emb._forward
            start = rss_bytes()
            trace = []
            for i, (rows, width) in enumerate(shapes):
                if rows * width > 1024:  # small passes: many shapes in little time
                    rows = max(1, 1024 // width)
                r, w = emb.padded_shape(rows, width) if bucketed else (rows, width)
                ids = np.full((r, w), 5, dtype=np.int64)
                fwd(ids, np.ones_like(ids), 2)
                if i % 20 == 19:
                    trace.append(round((rss_bytes() - start) / 2**20))
            res[f"{precision}-{'buckets' if bucketed else 'random'}"] = {
                "shapes": len({emb.padded_shape(r, w) if bucketed else (r, w) for r, w in shapes}),
                "rss_growth_mb_every_20": trace,
            }
            del emb, fwd
            gc.collect()
            log(f"shapes {precision} bucketed={bucketed}: {trace}")
    out["shapes"] = res


def section_peer(args: argparse.Namespace, out: dict[str, Any]) -> None:
    try:
        import txtai  # noqa: F401
    except ImportError:
        out["peer"] = {"error": "txtai is not installed (pip install -e '.[bench]')"}
        return
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            [
                sys.executable, "-m", "bench.perf", "--sections", "peer", "--quick",
                "--out", f"{tmp}/perf.json", "--md", f"{tmp}/perf.md",
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        try:
            peer = json.loads(Path(f"{tmp}/perf.json").read_text())
        except (OSError, ValueError):
            out["peer"] = {"error": res.stderr[-2000:]}
            return
    out["peer"] = {"perf_quick": peer.get("peer"), "load_average": load_avg()}


def render(out: dict[str, Any]) -> str:
    lines = [
        f"# Inference engines\n\nMachine: {out['machine']}; load average at start {out['load_average']}.\n"
    ]
    if "speed" in out:
        s = out["speed"]
        lines += [
            f"## Speed ({s['passages']} English XQuAD paragraphs, {s['questions']} single questions, "
            f"{s['rounds']} interleaved rounds, median passages/s)\n",
            "| engine | passages/s | question p50 ms | p95 ms | RSS MB | min cosine to fp32 |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in s["rows"].items():
            lines.append(
                f"| {name} | {r['passages_per_s']} | {r['query_p50_ms']} | {r['query_p95_ms']} | "
                f"{r['rss_mb']} | {r['min_cosine_to_fp32']} |"
            )
        lines.append(f"\nLoad average per round: {s['load_average']}\n")
    if "mrr" in out:
        m = out["mrr"]
        lines += [
            f"## XQuAD MRR@10, dense ({m['sample_questions_per_language']} questions per language)\n",
            "| engine | cross-lingual | mixed (seed 0) | drop vs fp32 | within 0.5 |",
            "|---|---|---|---|---|",
        ]
        for name, r in m["rows"].items():
            lines.append(
                f"| {name} | {r['crosslingual']} | {r['mixed']} | {r['drop']} | {'yes' if r['passed'] else 'no'} |"
            )
        lines.append("")
    if "http" in out:
        h = out["http"]
        lines += [
            f"## Through the real app (engine {h['engine']}) vs the plain library's encoder, same run\n",
            f"- HTTP ingest: {h['ingest_passages_per_s']} passages/s vs reference encode "
            f"{h['reference_encode_passages_per_s']}: {h['ingest_ratio']}× (target ≥ {h['ingest_target']}×)",
            f"- HTTP search p50: {h['search_p50_ms']} ms vs reference encode p50 {h['reference_encode_query_p50_ms']} ms: "
            f"{h['search_ratio']}× (target ≤ {h['search_target']}×); server RSS {h['server_rss_mb']} MB; "
            f"query threads at the end {h.get('query_threads_at_end')}; load {h['load_average']}\n",
        ]
    if "shapes" in out:
        lines += ["## RSS growth over passes of random shapes (MB after every 20 passes)\n"]
        lines += [
            f"- {k}: {v['shapes']} distinct shapes, {v['rss_growth_mb_every_20']}"
            for k, v in out["shapes"].items()
        ]
        lines.append("")
    if "peer" in out:
        lines += [
            "## txtai peer (`bench.perf --sections peer --quick`)\n",
            "```",
            json.dumps(out["peer"], indent=1)[:3000],
            "```",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="speed,mrr,http,peer")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "multilingual-e5-small")
    ap.add_argument("--passages", type=int, default=128)
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sample", type=int, default=200, help="questions per language for the MRR gate")
    ap.add_argument("--http-engine", default="", help="http: serve with this engine-precision (default auto)")
    ap.add_argument("--shapes", type=int, default=120, help="shapes: passes of random shapes")
    ap.add_argument("--candidates", default="", help="mrr: only these engine-precision names")
    ap.add_argument("--mrr-known", default="", help="mrr: JSON rows already measured (name -> figures)")
    ap.add_argument(
        "--write-faithful", action="store_true", help="record the MRR gate in embeddings/faithful.json"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "engines.json")
    ap.add_argument("--rss-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_worker:
        rss_worker(args.rss_worker, args.model)
        return
    out: dict[str, Any] = {"machine": machine(), "load_average": load_avg()}
    if args.out.exists():  # sections run separately accumulate in one file
        prev = json.loads(args.out.read_text())
        out = {**prev, **out}
    sections = {
        "speed": section_speed,
        "mrr": section_mrr,
        "http": section_http,
        "shapes": section_shapes,
        "peer": section_peer,
    }
    for name in args.sections.split(","):
        log(f"section {name} (load {load_avg()})")
        sections[name](args, out)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        args.out.with_suffix(".md").write_text(render(out), encoding="utf-8")
    print(render(out))


if __name__ == "__main__":
    main()
