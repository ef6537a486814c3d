"""Train the answer-sentence model: multilingual-e5-small's own layers reading a question and a sentence together.

The network is the embedding model's first `layers` transformer layers over the pair
`<s> query: QUESTION </s></s> passage: SENTENCE </s>`, mean-pooled (as the embedder pools), and one
linear unit: a logit that the sentence answers the question. Trained on groups (a question and the
sentence units of one paragraph) with two losses: a softmax over each answering group's units (pick
the right sentence among its neighbours) and a per-pair logistic loss (does this sentence answer at
all: the probability `/v1/answer` decides on, calibrated afterwards). The word embeddings (96M of
the model's 118M parameters) are frozen, so what training changes, and what ships, is the
transformer layers and the head (embeddings/answer_model.py rebuilds the rest from the model).

Only bench/train_answer.py calls this; it needs torch and transformers, like `model prepare`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from citesearch.embeddings.answer_model import (
    HEAD_BIAS,
    HEAD_WEIGHT,
    PairEncoder,
    build_network,
    load_network,
    save_delta,
)

MICRO_BATCH = 12
"""Pairs per forward pass while training (sorted by length within a step)."""


@dataclass(frozen=True)
class Example:
    """A question and some sentences, with their labels (1 answers, 0 does not)."""

    question: str
    sentences: tuple[str, ...]
    labels: tuple[int, ...]
    cosines: tuple[float, ...]
    """Each sentence's stored-vector cosine with the question (the bi-encoder's view, an input)."""


@dataclass(frozen=True)
class TrainConfig:
    layers: int = 12
    epochs: int = 1
    lr: float = 4e-5
    head_lr: float = 1e-3
    warmup: float = 0.06
    pairs_per_step: int = 48
    listwise_weight: float = 1.0
    pointwise_weight: float = 1.0
    bf16: bool = True
    threads: int = 2
    seed: int = 0
    init: Path | None = None
    """A delta to start from (continued training) instead of the embedding model's own layers."""


def _steps(examples: Sequence[Example], pairs_per_step: int, rnd: random.Random) -> Iterator[list[Example]]:
    order = list(examples)
    rnd.shuffle(order)
    batch: list[Example] = []
    n = 0
    for ex in order:
        batch.append(ex)
        n += len(ex.sentences)
        if n >= pairs_per_step:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


def train(
    model_dir: Path,
    examples_per_epoch: Callable[[int], Sequence[Example]],
    cfg: TrainConfig,
    out_dir: Path,
    *,
    log: Callable[[str], None] = print,
    evaluate: Callable[[Any, int], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Fine-tune and save the delta (layers and head) to `out_dir`; returns the training record."""
    import torch

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rnd = random.Random(cfg.seed)
    net = build_network(model_dir, cfg.layers) if cfg.init is None else load_network(model_dir, cfg.init)
    pairs = PairEncoder.from_model_dir(model_dir)
    head_params = [*net.head.parameters(), net.cos_scale]
    body = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("encoder.")]
    opt = torch.optim.AdamW(
        [{"params": body, "lr": cfg.lr}, {"params": head_params, "lr": cfg.head_lr}], weight_decay=0.01
    )
    epochs = [examples_per_epoch(e) for e in range(cfg.epochs)]
    total = sum(math.ceil(sum(len(x.sentences) for x in ex) / cfg.pairs_per_step) for ex in epochs)
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    bce = torch.nn.BCEWithLogitsLoss()
    record: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()},
        "steps": total,
        "epochs": [],
    }
    step, t0 = 0, time.time()
    for epoch, examples in enumerate(epochs):
        net.train()
        losses: list[float] = []
        for batch in _steps(examples, cfg.pairs_per_step, rnd):
            seqs = pairs.pair_ids([(ex.question, s) for ex in batch for s in ex.sentences])
            labels = torch.tensor([lab for ex in batch for lab in ex.labels], dtype=torch.float32)
            cos = torch.tensor([c for ex in batch for c in ex.cosines], dtype=torch.float32)
            # Forward passes of similar lengths (padding is most of the cost otherwise), then the
            # logits back in pair order for the group losses.
            order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
            parts = []
            for at in range(0, len(order), MICRO_BATCH):
                idx = order[at : at + MICRO_BATCH]
                ids, mask = pairs.pad([seqs[i] for i in idx])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                    parts.append(net(torch.from_numpy(ids), torch.from_numpy(mask), cos[idx]).float())
            back = torch.empty(len(order), dtype=torch.long)
            back[torch.tensor(order)] = torch.arange(len(order))
            logits = torch.cat(parts)[back]
            loss = cfg.pointwise_weight * bce(logits, labels)
            lw, at = [], 0
            for ex in batch:
                n = len(ex.sentences)
                if any(ex.labels):
                    lg = logits[at : at + n]
                    pos = torch.tensor(ex.labels, dtype=torch.bool)
                    lw.append(torch.logsumexp(lg, 0) - torch.logsumexp(lg[pos], 0))
                at += n
            if lw:
                loss = loss + cfg.listwise_weight * torch.stack(lw).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % 20 == 0 or step == total:
                log(
                    f"epoch {epoch + 1} step {step}/{total} loss {np.mean(losses[-20:]):.4f} "
                    f"{time.time() - t0:.0f}s"
                )
        entry: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "s": time.time() - t0}
        if evaluate is not None:
            net.eval()
            entry["eval"] = evaluate(net, epoch + 1)
            log(f"epoch {epoch + 1} eval {entry['eval']}")
        record["epochs"].append(entry)
    save_delta(net, out_dir, cfg.layers)
    return record


def scores(
    net: Any, pairs: PairEncoder, question: str, sentences: Sequence[str], cosines: Sequence[float]
) -> np.ndarray[Any, Any]:
    """Logits of a torch network for one question's sentences (evaluation during training)."""
    import torch

    ids, mask = pairs.batch([(question, s) for s in sentences])
    cos = torch.tensor(list(cosines), dtype=torch.float32)
    with torch.inference_mode():
        out: np.ndarray[Any, Any] = net(torch.from_numpy(ids), torch.from_numpy(mask), cos).float().numpy()
    return out


__all__ = ["HEAD_BIAS", "HEAD_WEIGHT", "Example", "TrainConfig", "build_network", "scores", "train"]
