"""Experiment: sentence vectors from the passage's own forward pass ("late chunking") vs a second pass.

Today every sentence unit of a passage is embedded again as its own "passage: ..." input. Here the
passage runs once through the prepared OpenVINO IR with one extra output, the last hidden state
per token, and each sentence unit's vector is the L2-normalised mean of some of those token states:

- `span`: the tokens whose character offsets start inside the sentence unit;
- `span+cls`: those plus the leading special token and the prompt's tokens ("passage:");
- `span+ctxK`: those plus K tokens either side (within the passage text);
- `contrastA`: the span's mean minus A times the mean of all the passage's tokens (the state every
  token shares), then normalised.

Everything else is bench/quality.py unchanged: passage and question vectors come from its
embedding cache (today's vectors), only the sentence vectors differ. A passage whose sentence units
are one (it reuses its passage vector, as today) or that exceeds the model's token limit (windows;
none in XQuAD) keeps today's path.

Run: `python -m bench.late_chunk_probe --variant span [bench.quality arguments...]`; the late
vectors are cached in ~/.cache/citesearch/late-chunk-<precision>.npz (keyed by passage text and its
units). `--variant today` runs bench.quality as it is.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import quality
from citesearch.embeddings.engine_cache import engines_dir_for, ir_path
from citesearch.embeddings.prepare import default_model_path
from citesearch.embeddings.scheduler import Priority
from citesearch.index import writes
from citesearch.index.articles import Article
from citesearch.index.state import Encoder

Vectors = npt.NDArray[np.float32]
PROMPT = "passage: "
LAST_HIDDEN = "__module.inner.encoder.layer.11.output.LayerNorm/aten::layer_norm/Add"


class TokenStates:
    """The prepared IR with the last hidden state as a second output, on one thread."""

    def __init__(self, precision: str) -> None:
        import openvino as ov
        from tokenizers import Tokenizer

        model_dir = default_model_path(None)
        xml = ir_path(engines_dir_for(model_dir), precision)
        core = ov.Core()
        model = core.read_model(str(xml))
        node = next(op for op in model.get_ordered_ops() if op.get_friendly_name() == LAST_HIDDEN)
        model.add_outputs([node.output(0)])
        self.compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
                "INFERENCE_NUM_THREADS": 1,
            },
        )
        self.request = self.compiled.create_infer_request()
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()

    def run(self, texts: list[str]) -> list[tuple[Vectors, Vectors, list[tuple[int, int]], list[int]]]:
        """Per text: (pooled vector, token states, offsets into prompt+text, special-token mask)."""
        encs = self.tok.encode_batch([PROMPT + t for t in texts])
        out: list[Any] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encs[i].ids))
        for s in range(0, len(order), 8):
            idx = order[s : s + 8]
            width = len(encs[idx[0]].ids)
            ids = np.ones((len(idx), width), np.int64)
            mask = np.zeros((len(idx), width), np.int64)
            for r, i in enumerate(idx):
                n = len(encs[i].ids)
                ids[r, :n] = encs[i].ids
                mask[r, :n] = 1
            res = self.request.infer({"input_ids": ids, "attention_mask": mask})
            pooled = np.array(res[0], np.float32)
            hidden = np.array(res[1], np.float32)
            for r, i in enumerate(idx):
                n = len(encs[i].ids)
                out[i] = (pooled[r], hidden[r, :n], list(encs[i].offsets), list(encs[i].special_tokens_mask))
        return out


VARIANTS = (
    "span",
    "span+cls",
    "span+cls+eos",
    "span+ctx2",
    "span+ctx4",
    "contrast0.5",
    "contrast0.8",
    "contrast0.95",
)


def sentence_vectors(
    hidden: Vectors, offsets: list[tuple[int, int]], special: list[int], units: list[tuple[int, int]]
) -> dict[str, Vectors]:
    """Every variant's vectors for `units` (offsets into the passage text), one row per unit."""
    n = len(offsets)
    p = len(PROMPT)
    body = [i for i in range(n) if not special[i] and offsets[i][0] >= p - 1]
    # tokens of the prompt itself ("passage", ":"): not special, offsets before the text
    prompt_tok = [i for i in range(n) if not special[i] and offsets[i][1] <= p - 1]
    cls = [i for i in range(n) if special[i] and i < n // 2]
    eos = [i for i in range(n) if special[i] and i >= n // 2]
    out: dict[str, list[Vectors]] = {v: [] for v in VARIANTS}
    for b, e in units:
        inside = [
            i for i in body if b <= offsets[i][0] - p < e or (offsets[i][0] - p < b < offsets[i][1] - p)
        ]
        if not inside:
            inside = body
        lo, hi = body.index(inside[0]), body.index(inside[-1])
        picks = {
            "span": inside,
            "span+cls": cls + prompt_tok + inside,
            "span+cls+eos": cls + prompt_tok + inside + eos,
            "span+ctx2": body[max(0, lo - 2) : hi + 3],
            "span+ctx4": body[max(0, lo - 4) : hi + 5],
        }
        whole = hidden.astype(np.float64).mean(0)
        for v in VARIANTS:
            if v.startswith("contrast"):
                m = hidden[inside].astype(np.float64).mean(0) - float(v[len("contrast") :]) * whole
            else:
                m = hidden[picks[v]].astype(np.float64).mean(0)
            out[v].append((m / max(np.linalg.norm(m), 1e-12)).astype(np.float32))
    return {v: np.vstack(rows) for v, rows in out.items()}


class LateCache:
    """Late-chunked sentence vectors per (passage text, units), every variant, on disk."""

    def __init__(self, precision: str) -> None:
        self.path = Path.home() / ".cache" / "citesearch" / f"late-chunk-{precision}.npz"
        self.precision = precision
        self.data: dict[str, dict[str, Vectors]] = {}
        self.pooled: dict[str, Vectors] = {}
        self._states: TokenStates | None = None
        if self.path.exists():
            with np.load(self.path, allow_pickle=False) as f:
                keys = f["keys"].tolist()
                for v in VARIANTS:
                    arr, lens = f[f"v:{v}"], f["lens"]
                    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
                    for k, s, n in zip(keys, starts, lens, strict=True):
                        self.data.setdefault(k, {})[v] = arr[s : s + n]
                for k, vec in zip(keys, f["pooled"], strict=True):
                    self.pooled[k] = vec
        self.dirty = False

    @staticmethod
    def key(text: str, units: list[tuple[int, int]]) -> str:
        return text + "\x00" + ";".join(f"{b},{e}" for b, e in units)

    def get(self, items: list[tuple[str, list[tuple[int, int]]]], variant: str) -> list[Vectors]:
        todo = [(t, u) for t, u in items if self.key(t, u) not in self.data]
        if todo:
            if self._states is None:
                self._states = TokenStates(self.precision)
            for (t, u), (pooled, hidden, offs, spec) in zip(
                todo, self._states.run([t for t, _ in todo]), strict=True
            ):
                k = self.key(t, u)
                self.data[k] = sentence_vectors(hidden, offs, spec, u)
                self.pooled[k] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
            self.dirty = True
        return [self.data[self.key(t, u)][variant] for t, u in items]

    def save(self) -> None:
        if not self.dirty:
            return
        keys = list(self.data)
        lens = np.array([len(self.data[k]["span"]) for k in keys])
        arrays: dict[str, Any] = {f"v:{v}": np.vstack([self.data[k][v] for k in keys]) for v in VARIANTS}
        arrays.update(keys=np.array(keys), lens=lens, pooled=np.vstack([self.pooled[k] for k in keys]))
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(self.path)
        self.dirty = False


def patched_prepare(cache: LateCache, variant: str) -> Any:
    """Writer.prepare with late-chunked sentence vectors (passage vectors as today)."""

    def prepare(
        self: writes.Writer,
        articles: Sequence[Article],
        embedder: Encoder,
        priority: Priority = Priority.WRITE,
    ) -> list[writes.Prepared]:
        spans = [self._split(a, i, embedder) for i, a in enumerate(articles)]
        units = [[self._sentence_units(a, s) for s in ss] for a, ss in zip(articles, spans, strict=True)]
        flat = [s.text for ss in spans for s in ss]
        vecs = self.core.scheduler.encode_passages(embedder, flat, priority)
        items = [
            (s.text, [(b - s.char_start, e - s.char_start) for b, e in u])
            for ss, us in zip(spans, units, strict=True)
            for s, u in zip(ss, us, strict=True)
            if len(u) > 1
        ]
        late = iter(cache.get(items, variant))
        cache.save()
        return writes.assemble(articles, spans, units, vecs, late)

    return prepare


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", choices=("today", *VARIANTS), required=True)
    ap.add_argument("--precision", default="int8", choices=("fp32", "int8"))
    args, rest = ap.parse_known_args(argv)
    if args.variant != "today":
        cache = LateCache(args.precision)
        writes.Writer.prepare = patched_prepare(cache, args.variant)  # type: ignore[method-assign]
        print(f"late chunking: {args.variant}, {args.precision}", file=sys.stderr)
    quality.main(rest)


if __name__ == "__main__":
    main()
