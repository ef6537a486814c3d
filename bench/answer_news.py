"""The news-style dev set (bench/data/news_dev.jsonl) over HTTP: highlights, answers and chat follow-ups.

The corpus is one version of every WMT22 story (../shared/eval/wmt22/stories.jsonl): the version the
dev set's questions are about for its 25 stories, a version drawn with seed 0 for the other 202
(several languages, several stories on the same topics). A real `citesearch serve` (default
settings) ingests it; then every question is asked over HTTP:
- answerable: `POST /v1/search` (is the top passage from the article and does it contain the
  answer; does its highlight) and `POST /v1/answer` (does a quoted sentence contain the answer);
- unanswerable: `POST /v1/answer` (answered anyway?);
- follow-ups: `POST /v1/chat/completions` with the first question, the server's own answer to it,
  then the follow-up; beside it the follow-up asked alone and the standalone question asked alone.

Run: `.venv/bin/python -m bench.answer_news [--out bench/results/answer-news.json]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.perf import machine, serve

ROOT = Path(__file__).resolve().parent.parent
WMT = ROOT.parent / "shared" / "eval" / "wmt22" / "stories.jsonl"
DEV = ROOT / "bench" / "data" / "news_dev.jsonl"


def _post(port: int, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        t0 = time.perf_counter()
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        ms = (time.perf_counter() - t0) * 1000
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status} {data}")
    return data, ms


def corpus(dev: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in WMT.read_text(encoding="utf-8").splitlines()]
    wanted = {d["article_id"] for d in dev if d.get("article_id")}
    by_story: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_story[r["story"]].append(r)
    rnd = random.Random(0)
    out = []
    for story in sorted(by_story):
        versions = sorted(by_story[story], key=lambda r: r["id"])
        chosen = [r for r in versions if r["id"] in wanted]
        pick = chosen[0] if chosen else rnd.choice(versions)
        out.append(
            {
                "id": pick["id"],
                "title": pick["title"],
                "text": pick["text"],
                "source": pick["source"],
                "published_at": pick["published_at"],
                "language": pick["language"],
            }
        )
    return out


def readings(answer: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
    """The model's probability for each read result's sentence and whether it holds the answer
    (to replay the answer decision at other thresholds)."""
    return {
        "reads": [
            [
                r["highlight"]["probability"],
                bool(d.get("answer"))
                and r["article_id"] == d.get("article_id")
                and d["answer"] in r["highlight"]["text"],
            ]
            for r in answer["results"]
            if r["highlight"]["probability"] is not None
        ]
    }


def cosine_rule(search: dict[str, Any], d: dict[str, Any]) -> dict[str, bool] | None:
    """What the answer rule before the answer model gave (top highlight's cosine >= 0.80; lower
    results quoted when their cosine is as high): only meaningful with the model off
    (`CITESEARCH_ANSWER_MODEL=off`: every highlight by cosine)."""
    res = search["results"]
    if not res or res[0]["highlight"]["probability"] is not None:
        return None
    top = res[0]["highlight"]["score"] or 0.0
    if top < 0.80:
        return {"answered": False, "holds": False}
    picked = [r for r in res if (r["highlight"]["score"] or 0.0) >= top][:3]
    holds = any(
        r["article_id"] == d.get("article_id") and d.get("answer", "\0") in r["highlight"]["text"]
        for r in picked
    )
    return {"answered": True, "holds": holds}


def quoted(answer: dict[str, Any], article: str, text: str) -> bool:
    return any(c["article_id"] == article and text in c["text"] for c in answer["citations"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "answer-news.json")
    args = ap.parse_args()
    dev = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = corpus(dev)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp) / "d", Path(tmp) / "log") as srv:
        for i in range(0, len(docs), 32):
            _post(srv.port, "/v1/articles", {"articles": docs[i : i + 32]})
        for d in dev:
            row: dict[str, Any] = {"id": d["id"], "kind": d["kind"], "language": d["language"]}
            if d["kind"] == "answerable":
                s, s_ms = _post(srv.port, "/v1/search", {"query": d["question"]})
                top = s["results"][0] if s["results"] else None
                right = bool(top and top["article_id"] == d["article_id"] and d["answer"] in top["text"])
                row.update(
                    style=d["style"],
                    cross=d["language"] != next(x["language"] for x in docs if x["id"] == d["article_id"]),
                    top_right=right,
                    highlight_holds=(d["answer"] in top["highlight"]["text"]) if right and top else None,
                    highlight_answers=bool(top and top["highlight"]["answers"]),
                    highlight_chars=len(top["highlight"]["text"]) if top else 0,
                    search_ms=s_ms,
                )
                a, a_ms = _post(srv.port, "/v1/answer", {"query": d["question"]})
                row.update(
                    answered=a["answered"],
                    quote_holds=quoted(a, d["article_id"], d["answer"]),
                    answer_ms=a_ms,
                )
                row.update(readings(a, d), cosine_rule=cosine_rule(s, d))
            elif d["kind"] == "unanswerable":
                a, a_ms = _post(srv.port, "/v1/answer", {"query": d["question"]})
                s, _ = _post(srv.port, "/v1/search", {"query": d["question"]})
                row.update(answered=a["answered"], answer_ms=a_ms)
                row.update(readings(a, d), cosine_rule=cosine_rule(s, d))
            else:
                first, _ = _post(srv.port, "/v1/answer", {"query": d["first"]})
                messages = [
                    {"role": "user", "content": d["first"]},
                    {"role": "assistant", "content": first["answer"]},
                    {"role": "user", "content": d["question"]},
                ]
                chat, _ = _post(
                    srv.port, "/v1/chat/completions", {"model": "citesearch", "messages": messages}
                )
                alone, _ = _post(srv.port, "/v1/answer", {"query": d["question"]})
                full, _ = _post(srv.port, "/v1/answer", {"query": d["full"]})
                row.update(
                    chat_holds=quoted({"citations": chat["citations"]}, d["article_id"], d["answer"]),
                    alone_holds=quoted(alone, d["article_id"], d["answer"]),
                    full_holds=quoted(full, d["article_id"], d["answer"]),
                )
            rows.append(row)
    out = {"machine": machine(), "corpus_articles": len(docs), "rows": rows, "summary": summarise(rows)}
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(out["summary"], indent=2))


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def share(rs: list[dict[str, Any]], key: str) -> str:
        xs = [r[key] for r in rs if r.get(key) is not None]
        return f"{sum(xs)}/{len(xs)}" if xs else "-"

    ans = [r for r in rows if r["kind"] == "answerable"]
    un = [r for r in rows if r["kind"] == "unanswerable"]
    fu = [r for r in rows if r["kind"] == "followup"]
    out: dict[str, Any] = {}
    for name, rs in (
        ("answerable", ans),
        ("cross-lingual", [r for r in ans if r["cross"]]),
        ("same language", [r for r in ans if not r["cross"]]),
        ("keywords", [r for r in ans if r["style"] == "keywords"]),
    ):
        out[name] = {
            "n": len(rs),
            "top passage right": share(rs, "top_right"),
            "highlight holds (top right)": share(rs, "highlight_holds"),
            "answer quotes the answer": share(rs, "quote_holds"),
            "answered": share(rs, "answered"),
            "mean highlight chars": round(statistics.mean(r["highlight_chars"] for r in rs), 1)
            if rs
            else None,
        }
    out["unanswerable"] = {"n": len(un), "answered anyway": share(un, "answered")}
    out["follow-ups"] = {
        "n": len(fu),
        "chat (with the conversation)": share(fu, "chat_holds"),
        "follow-up asked alone": share(fu, "alone_holds"),
        "standalone question": share(fu, "full_holds"),
    }
    ms = [r["answer_ms"] for r in rows if "answer_ms" in r]
    sms = [r["search_ms"] for r in rows if "search_ms" in r]
    out["latency"] = {
        "search p50 ms": round(statistics.median(sms), 1) if sms else None,
        "answer p50 ms": round(statistics.median(ms), 1) if ms else None,
    }
    return out


if __name__ == "__main__":
    main()
