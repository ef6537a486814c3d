"""The answer-sentence model: which sentence of a passage answers the question, and how sure it is.

A question and a sentence are read together as `<s> query: Q </s></s> passage: S </s>` (the
embedding model's own prompts and its tokenizer's pair template; the question cut to MAX_QUESTION
tokens, the sentence to MAX_SENTENCE) by multilingual-e5-small's own layers, fine-tuned for the job
(embeddings/answer_train.py, bench/train_answer.py), mean-pooled, and one linear unit: the *read*
logit. The answer logit adds `cos_scale * (cosine - COS_CENTER)`, the cosine of the sentence's
stored vector with the question's (what search already has). A probability comes from the logit
by the Platt scaling of the question's and the sentence's languages (`Calibration`, fitted on
held-out train titles).

Files: the shipped delta (`embeddings/answer/`: what training changed, the transformer layers and
the head in fp16, with the calibration and provenance) is combined at `citesearch model prepare`
with the prepared embedding model's own embeddings into OpenVINO IRs (fp32 and NNCF int8,
`<models>/answer-sentence/`, embeddings/answer_prepare.py); serving loads the engine prepare
measured to be fastest and faithful, or torch when asked.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from citesearch.embeddings.embedder import _inference_lock as inference_lock

MAX_QUESTION = 48
MAX_SENTENCE = 128
QUESTION_PROMPT = "query: "
SENTENCE_PROMPT = "passage: "
DELTA_FILE = "answer-delta.safetensors"
CONFIG_FILE = "answer-model.json"
HEAD_WEIGHT = "head.weight"
HEAD_BIAS = "head.bias"
LAYER_PREFIX = "encoder.encoder.layer."
WIDTH_STEP = 16
COS_CENTER = 0.8
"""The read logit adds `cos_scale * (cosine - COS_CENTER)`: the stored sentence vector's cosine with
the question, so an untrained head ranks exactly as the bi-encoder does and training learns what
reading the two together adds."""
COS_SCALE_INIT = 40.0

SHIPPED_DIR = Path(__file__).resolve().parent / "answer"
PREPARED_DIRNAME = "answer-sentence"
MANIFEST = "citesearch-answer.json"
ROW_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)

Ids = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]


class PairEncoder:
    """Token ids of (question, sentence) pairs, padded to a multiple of WIDTH_STEP."""

    def __init__(self, tokenizer: Any, cls_id: int, sep_id: int, pad_id: int) -> None:
        self._tok = tokenizer
        self.cls, self.sep, self.pad_id = cls_id, sep_id, pad_id

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> PairEncoder:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()

        def tid(name: str, default: int) -> int:
            found = tok.token_to_id(name)
            return int(found) if found is not None else default

        return cls(tok, tid("<s>", 0), tid("</s>", 2), tid("<pad>", 1))

    def _ids(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.ids)[:limit] for e in encs]

    def pair_ids(self, pairs: Sequence[tuple[str, str]]) -> list[list[int]]:
        """Each pair as one token sequence (before padding)."""
        qs = self._ids([QUESTION_PROMPT + q for q, _ in pairs], MAX_QUESTION)
        ss = self._ids([SENTENCE_PROMPT + s for _, s in pairs], MAX_SENTENCE)
        return [[self.cls, *q, self.sep, self.sep, *s, self.sep] for q, s in zip(qs, ss, strict=True)]

    def pad(self, seqs: Sequence[list[int]]) -> tuple[Ids, Ids]:
        """(ids, mask) padded to the longest, rounded up to WIDTH_STEP."""
        width = max(len(s) for s in seqs)
        width = -(-width // WIDTH_STEP) * WIDTH_STEP
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return ids, mask

    def batch(self, pairs: Sequence[tuple[str, str]]) -> tuple[Ids, Ids]:
        return self.pad(self.pair_ids(pairs))


def build_network(model_dir: Path, layers: int) -> Any:
    """The embedding model's first `layers` layers with a linear head, embeddings frozen (torch)."""
    import torch
    from transformers import AutoModel

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(str(model_dir), add_pooling_layer=False)
            self.encoder.encoder.layer = self.encoder.encoder.layer[:layers]
            self.encoder.config.num_hidden_layers = layers
            self.encoder.embeddings.requires_grad_(False)
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
            torch.nn.init.normal_(self.head.weight, std=0.02)
            torch.nn.init.zeros_(self.head.bias)
            self.cos_scale = torch.nn.Parameter(torch.tensor(COS_SCALE_INIT))

        def pooled(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            w = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return ((hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)).float()

        def forward(self, input_ids: Any, attention_mask: Any, cosines: Any) -> Any:
            read = self.head(self.pooled(input_ids, attention_mask)).squeeze(-1)
            return read + self.cos_scale * (cosines - COS_CENTER)

    return Net()


def save_delta(net: Any, out_dir: Path, layers: int, extra: dict[str, Any] | None = None) -> None:
    """Write what training changed (layers and head, fp16) and the model's shape to `out_dir`."""
    import torch
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to(torch.float16).contiguous()
        for k, v in net.state_dict().items()
        if k.startswith((LAYER_PREFIX, "head.")) or k == "cos_scale"
    }
    save_file(state, str(out_dir / DELTA_FILE))
    config = {"layers": layers, "max_question": MAX_QUESTION, "max_sentence": MAX_SENTENCE, **(extra or {})}
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


# ---- serving ----------------------------------------------------------------------------------------


Scaling = tuple[float, float, float]
"""(a, b, c) of P(answers) = sigmoid(a * logit + b + c * (passage cosine - COS_CENTER))."""


@dataclass(frozen=True)
class Calibration:
    """Platt scaling per language pair, with the passage's own cosine as a second input (a
    sentence answers only inside a passage that is about the question): `pairs` keyed
    `question>sentence` (e.g. `zh>en`), then `same` / `cross`, then `default`."""

    default: Scaling = (1.0, 0.0, 0.0)
    pairs: tuple[tuple[str, Scaling], ...] = ()

    def scale(self, question_language: str | None, sentence_language: str | None) -> Scaling:
        q = (question_language or "").split("-")[0].lower()
        s = (sentence_language or "").split("-")[0].lower()
        table = dict(self.pairs)
        if f"{q}>{s}" in table:
            return table[f"{q}>{s}"]
        key = "same" if q and q == s else "cross"
        return table.get(key, self.default)

    def probabilities(
        self,
        logits: Floats,
        question_language: str | None,
        sentence_language: str | None,
        passage_cosine: float = COS_CENTER,
    ) -> Floats:
        a, b, c = self.scale(question_language, sentence_language)
        z = a * logits.astype(np.float64) + b + c * (passage_cosine - COS_CENTER)
        out: Floats = (1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))).astype(np.float32)
        return out


@dataclass(frozen=True)
class AnswerConfig:
    """What the shipped model says about itself (`answer-model.json`)."""

    layers: int
    threshold: float
    """Probability at or above which a sentence answers (chosen on the tune titles)."""
    calibration: Calibration
    version: str
    unsure_logit_margin: float = 0.0
    """The adjacent runner-up joins the best sentence in a highlight when its logit is within this."""

    @classmethod
    def read(cls, shipped: Path = SHIPPED_DIR) -> AnswerConfig:
        data = json.loads((shipped / CONFIG_FILE).read_text(encoding="utf-8"))
        cal = data.get("calibration") or {}

        def scaling(v: list[float]) -> Scaling:
            return (float(v[0]), float(v[1]), float(v[2]) if len(v) > 2 else 0.0)

        pairs = tuple(sorted((str(k), scaling(v)) for k, v in (cal.get("pairs") or {}).items()))
        return cls(
            layers=int(data["layers"]),
            threshold=float(data.get("threshold", 0.5)),
            calibration=Calibration(scaling(cal.get("default") or [1.0, 0.0]), pairs),
            version=str(data.get("version", "")),
            unsure_logit_margin=float(data.get("unsure_logit_margin", 0.0)),
        )


class AnswerForward(Protocol):
    """The read logit of padded pairs: (ids, mask) of shape (rows, width) to (rows,) float32."""

    engine: str
    precision: str

    def __call__(self, input_ids: Ids, mask: Ids) -> Floats: ...


class TorchAnswerForward:
    """The network in torch at fp32 (prepare's reference, and the engine when OpenVINO is not wanted)."""

    engine = "torch"
    precision = "fp32"

    def __init__(self, net: Any) -> None:
        import torch

        self._torch = torch
        self.net = net.eval()

    def __call__(self, input_ids: Ids, mask: Ids) -> Floats:
        torch = self._torch
        with torch.inference_mode():
            pooled = self.net.pooled(torch.from_numpy(input_ids), torch.from_numpy(mask))
            out: Floats = self.net.head(pooled).squeeze(-1).float().numpy()
        return out


class OpenVINOAnswerForward:
    """The prepared OpenVINO IR of the read logit, compiled once on all usable cores, one request."""

    engine = "openvino"

    def __init__(self, xml: Path, precision: str, cores: int) -> None:
        import openvino as ov

        self.precision = precision
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",  # int8 IRs carry their own
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": cores,
        }
        self._request = core.compile_model(core.read_model(str(xml)), "CPU", config).create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, input_ids: Ids, mask: Ids) -> Floats:
        with self._lock:
            result = self._request.infer({"input_ids": input_ids, "attention_mask": mask}, share_inputs=True)
            out: Floats = np.array(result[0], dtype=np.float32, copy=True).reshape(-1)
        return out


class AnswerModel:
    """Scores sentences as answers to a question: logits, and calibrated probabilities."""

    def __init__(self, forward: AnswerForward, pairs: PairEncoder, config: AnswerConfig, cos_scale: float):
        self.forward = forward
        self.pairs = pairs
        self.config = config
        self.cos_scale = cos_scale
        self.passes = 0
        """Forward passes run (tests and benchmarks)."""

    @property
    def engine_name(self) -> str:
        return f"{self.forward.engine}-{self.forward.precision}"

    @property
    def threshold(self) -> float:
        return self.config.threshold

    @property
    def unsure_margin(self) -> float:
        return self.config.unsure_logit_margin

    def calibrate(
        self,
        logits: Floats,
        question_language: str | None,
        sentence_language: str | None,
        passage_cosine: float = COS_CENTER,
    ) -> Floats:
        """Probabilities of answer logits for this pair of languages and this passage cosine."""
        return self.config.calibration.probabilities(
            logits, question_language, sentence_language, passage_cosine
        )

    def read(self, question: str, sentences: Sequence[str]) -> Floats:
        """The read logits alone (no cosine), one forward pass per batch of similar width."""
        if not sentences:
            return np.zeros(0, dtype=np.float32)
        seqs = self.pairs.pair_ids([(question, s) for s in sentences])
        out = np.empty(len(seqs), dtype=np.float32)
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        for at in range(0, len(order), ROW_BUCKETS[-1]):
            idx = order[at : at + ROW_BUCKETS[-1]]
            ids, mask = self.pairs.pad([seqs[i] for i in idx])
            rows = next(b for b in ROW_BUCKETS if b >= len(idx))
            if rows > len(idx):  # filler rows (bounded shapes): one token each, outputs dropped
                ids = np.vstack([ids, np.full((rows - len(idx), ids.shape[1]), self.pairs.pad_id)])
                filler = np.zeros((rows - len(idx), mask.shape[1]), dtype=np.int64)
                filler[:, 0] = 1
                mask = np.vstack([mask, filler])
            with inference_lock:
                out[idx] = self.forward(ids, mask)[: len(idx)]
            self.passes += 1
        return out

    def logits(self, question: str, sentences: Sequence[str], cosines: Sequence[float]) -> Floats:
        """Answer logits: the read logit plus the scaled stored-vector cosine."""
        read = self.read(question, sentences)
        cos = np.asarray(cosines, dtype=np.float32)
        out: Floats = read + np.float32(self.cos_scale) * (cos - np.float32(COS_CENTER))
        return out

    def probabilities(
        self,
        question: str,
        sentences: Sequence[str],
        cosines: Sequence[float],
        question_language: str | None,
        sentence_language: str | None,
        passage_cosine: float = COS_CENTER,
    ) -> Floats:
        """P(the sentence answers the question) for each sentence of one passage."""
        logits = self.logits(question, sentences, cosines)
        return self.calibrate(logits, question_language, sentence_language, passage_cosine)


def shipped_delta(shipped: Path = SHIPPED_DIR) -> dict[str, npt.NDArray[Any]]:
    """The delta's tensors as numpy arrays (no torch needed)."""
    from safetensors.numpy import load_file

    return dict(load_file(str(shipped / DELTA_FILE)))


def load_network(model_dir: Path, shipped: Path = SHIPPED_DIR) -> Any:
    """The torch network: the prepared embedding model's embeddings and the shipped layers and head."""
    import torch

    config = AnswerConfig.read(shipped)
    net = build_network(model_dir, config.layers)
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in shipped_delta(shipped).items()}
    missing = [k for k in state if k not in net.state_dict()]
    if missing:
        raise ValueError(f"answer model delta does not fit the network: {missing[:3]}")
    net.load_state_dict(state, strict=False)
    return net.eval()


def cos_scale_of(shipped: Path = SHIPPED_DIR) -> float:
    return float(shipped_delta(shipped)["cos_scale"].reshape(-1)[0])


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, x))))
