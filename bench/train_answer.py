"""Train the answer-sentence model on XQuAD's train titles (fit part), choosing on its tune part.

    .venv/bin/python -m bench.train_answer --layers 12 --epochs 2 --out embeddings/answer

Each epoch draws, for a share of the fit questions (every language), the gold paragraph in one
passage language (the question's own 40%, English 30% (Chinese for English questions), any 30%),
and for half of them a paragraph that does not answer (another paragraph of the same article 70%,
of another article 30%; at most NEG_UNITS of its units). After each epoch the model is scored on
the tune titles: how often the highest-scoring unit of the gold paragraph holds the answer, with
the question's language and across languages, beside the cosine of the stored sentence vectors.
Writes the delta and `training.json` (every figure) to --out.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import regex

from bench.answer_data import (
    Cosines,
    Group,
    Question,
    gold_groups,
    negative_group,
    of_titles,
    paragraphs,
    split,
)
from citesearch.embeddings.answer_model import PairEncoder
from citesearch.embeddings.answer_train import Example, TrainConfig, scores, train
from citesearch.embeddings.prepare import default_model_path

NEG_UNITS = 3
PAIR_MIX = (("mono", 0.4), ("en", 0.3), ("random", 0.3))


def _pair_kind(rnd: random.Random) -> str:
    x = rnd.random()
    for kind, share in PAIR_MIX:
        if x < share:
            return kind
        x -= share
    return PAIR_MIX[-1][0]


_WORD = regex.compile(r"[\p{L}\p{M}\p{N}][\p{L}\p{M}\p{N}'’.-]*")
_UNSPACED = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}]")
_PARTICLES = regex.compile(
    r"[吗呢么嗎什哪谁誰多少怎为為何か？?。、]|什么|哪里|为什么|多少|ですか|ไหม|อะไร|เท่าไร"
)


def keywords(question: str) -> str:
    """A question as the keywords someone would type instead ("H20 backdoor"): for spaced scripts
    the words after the first (most languages open with the question word) that are long, numbers
    or capitalised; for unspaced scripts the question without its question particles."""
    if _UNSPACED.search(question):
        return _PARTICLES.sub("", question).strip()
    words = _WORD.findall(question)[1:]
    kept = [w for w in words if len(w) >= 4 or any(c.isdigit() for c in w) or w[:1].isupper()]
    return " ".join(kept)


def claim(sentence: str, rnd: random.Random) -> str:
    """A yes/no-style question restating a sentence's claim (the answer sentence in another
    language, cut short and asked): teaches that a sentence which says what the question asks
    about answers it, not only one holding a fact the question asks for."""
    if _UNSPACED.search(sentence):
        return sentence[: max(8, int(len(sentence) * rnd.uniform(0.4, 0.7)))].rstrip("，。、 ") + "？"
    words = sentence.split()
    return " ".join(words[: max(4, int(len(words) * rnd.uniform(0.4, 0.7)))]).rstrip(",.;: ") + "?"


def epoch_examples(
    qs: list[Question], share: float, neg_share: float, seed: int, cos: Cosines, styles: float = 0.0
) -> list[Example]:
    """One epoch's examples (see the module docstring); `styles`: the share of questions asked as
    keywords, and the same share again as a claim (the gold sentence in another language, asked)."""
    rnd = random.Random(seed)
    picked = rnd.sample(qs, int(len(qs) * share))
    out: list[Example] = []
    for q in picked:
        g = next(gold_groups([q], _pair_kind(rnd), rnd))
        if any(g.labels):
            texts = g.paragraph.unit_texts()
            x = rnd.random()
            text = q.text
            if x < styles:
                text = keywords(q.text) or q.text
            elif x < 2 * styles:
                other = next(gold_groups([q], "random", rnd))
                gold = [t for t, lab in zip(other.paragraph.unit_texts(), other.labels, strict=True) if lab]
                text = claim(gold[0], rnd) if gold else q.text
            if text != q.text:
                cos.fill([text], texts)
            out.append(Example(text, tuple(texts), g.labels, cos.of(text, texts)))
        if rnd.random() < neg_share:
            n = negative_group(q, rnd, same_article=rnd.random() < 0.7)
            idx = rnd.sample(range(len(n.labels)), min(NEG_UNITS, len(n.labels)))
            texts = [n.paragraph.unit_texts()[i] for i in idx]
            out.append(Example(q.text, tuple(texts), tuple(0 for _ in idx), cos.of(q.text, texts)))
    return out


def eval_groups(part: str, n: int, seed: int = 1) -> dict[str, list[Group]]:
    """A fixed sample of `part`'s questions against their gold paragraph: `mono` and `cross`."""
    rnd = random.Random(seed)
    qs = rnd.sample(of_titles(part), n)
    return {
        "mono": list(gold_groups(qs, "mono", rnd)),
        "cross": list(gold_groups(qs, "en", rnd)),
    }


def top1(groups: list[Group], score_of: Any) -> float:
    hits = [g.holds[int(np.argmax(score_of(g)))] for g in groups]
    return float(np.mean(hits))


def fill_train(cos: Cosines) -> None:
    """Encode every question and unit of the train titles (fit and tune) once."""
    titles = set(split()["fit"]) | set(split()["tune"])
    units = [u for (t, _, _), p in paragraphs().items() if t in titles for u in p.unit_texts()]
    qs = [q.text for part in ("fit", "tune") for q in of_titles(part)]
    cos.fill(qs, units)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--share", type=float, default=0.35, help="fit questions drawn per epoch")
    ap.add_argument("--neg-share", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--eval-n", type=int, default=300)
    ap.add_argument("--styles", type=float, default=0.0, help="share asked as keywords (and as claims)")
    ap.add_argument("--init", type=Path, default=None, help="start from this delta directory")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--bundle", action="store_true", help="only write the prepare-time calibration file to --out"
    )
    args = ap.parse_args()
    if args.bundle:
        bundle(args.out)
        return
    model_dir = default_model_path()
    fit = of_titles("fit")
    groups = eval_groups("tune", args.eval_n)
    record: dict[str, Any] = {
        "fit_questions": len(fit),
        "eval_groups": {k: len(v) for k, v in groups.items()},
    }
    cos = Cosines()
    fill_train(cos)
    record["cosine"] = {
        k: top1(v, lambda g: np.array(cos.of(g.question.text, g.paragraph.unit_texts())))
        for k, v in groups.items()
    }
    print("cosine", record["cosine"], flush=True)
    pairs = PairEncoder.from_model_dir(model_dir)

    def read(net: Any, g: Group) -> Any:
        texts = g.paragraph.unit_texts()
        return scores(net, pairs, g.question.text, texts, cos.of(g.question.text, texts))

    def evaluate(net: Any, epoch: int) -> dict[str, float]:
        return {k: top1(v, lambda g: read(net, g)) for k, v in groups.items()}

    cfg = TrainConfig(layers=args.layers, epochs=args.epochs, lr=args.lr, init=args.init)
    t0 = time.time()
    record["training"] = train(
        model_dir,
        lambda e: epoch_examples(
            fit, args.share, args.neg_share, 100 + e + (10 if args.init else 0), cos, args.styles
        ),
        cfg,
        args.out,
        log=lambda m: print(m, flush=True),
        evaluate=evaluate,
    )
    record["seconds"] = time.time() - t0
    record["argv"] = sys.argv[1:]
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record["training"]["epochs"], indent=1))


def bundle(out: Path, n_pairs: int = 160, n_groups: int = 48, seed: int = 7) -> None:
    """The small file `model prepare` calibrates int8 on (pairs from fit titles) and measures engines
    on (groups from tune titles, with their cosines): embeddings/answer/calibration.jsonl."""
    rnd = random.Random(seed)
    cos = Cosines()
    rows: list[dict[str, Any]] = [
        {
            "kind": "about",
            "text": "XQuAD (Artetxe et al., 2019; deepmind/xquad), CC BY-SA 4.0: questions and sentences of "
            "its train titles (../shared/eval/xquad/split.json), to calibrate int8 and measure engines at "
            "`model prepare`. See LICENSE-XQUAD.txt.",
        }
    ]
    fit_groups = list(gold_groups(rnd.sample(of_titles("fit"), n_pairs), "random", rnd))
    for g in fit_groups:
        texts = g.paragraph.unit_texts()
        rows.append({"kind": "pair", "question": g.question.text, "sentence": rnd.choice(texts)})
    for g in gold_groups(rnd.sample(of_titles("tune"), n_groups), "random", rnd):
        texts = g.paragraph.unit_texts()
        rows.append(
            {
                "kind": "group",
                "question": g.question.text,
                "sentences": texts,
                "cosines": [round(c, 6) for c in cos.of(g.question.text, texts)],
                "qlang": g.question.language,
                "slang": g.paragraph.language,
            }
        )
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
