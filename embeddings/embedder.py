"""The one embedding entry point of citesearch: load a model offline and encode text, on torch or OpenVINO.

Only this package imports sentence-transformers, torch and OpenVINO; everything else uses :class:`Embedder`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from citesearch.embeddings.engine_cache import (
    choose,
    engines_dir_for,
    ir_path,
    read_engines_manifest,
)
from citesearch.embeddings.engines import Forward, OpenVINOForward, TorchForward
from citesearch.embeddings.errors import ModelError
from citesearch.embeddings.prepare import (
    DEFAULT_MODEL_ID,
    PREPARE_HINT,
    default_model_path,
    is_prepared,
    read_manifest,
)
from citesearch.embeddings.threads import ThreadChooser

PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT_BATCH_SIZE = 32
MAX_BATCH_TOKENS = 4096  # padded tokens per forward pass: bounds memory and padding waste
# Forward passes this small (a query) run on the thread count a ThreadChooser measures to be
# cheaper now (OpenVINO: a second thread gains ~2 ms on an idle 2-core machine and loses when
# another process holds the other core); on torch always one: its OpenMP barriers cost up to ~1 s
# per pass when another process holds the other core, too much for even an occasional try.
SMALL_FORWARD_TOKENS = 128
WINDOW_OVERLAP = 64
# Forward passes use a bounded set of shapes: oneDNN keeps compiled kernels per input shape, so
# every new (rows, width) pair costs memory for the life of the process (measured: 300 passes of
# random shapes, RSS +714 MB and rising; the same passes in these buckets stay bounded).
ROW_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
SMALL_WIDTH_STEP, WIDTH_STEP, SMALL_WIDTH = 8, 32, 64
DEFAULT_QUERY_SHAPES = 3
"""Question widths OpenVINO compiles copies for (16, 24, 32 tokens: 95.9% of the XQuAD questions in
12 languages fit), for each thread count a question runs on; each copy costs about 25 MB and 0.4 s
to compile and saves about a quarter of a short question's pass (see engines.OpenVINOForward)."""
E5_PROMPTS = ("query: ", "passage: ")
_torch_lock = threading.Lock()
_torch_configured = False
_CORES = max(1, len(os.sched_getaffinity(0)))
# One forward pass at a time in the process: they are CPU-bound and would only fight for the cores.
_inference_lock = threading.Lock()

Vectors = npt.NDArray[np.float32]
log = logging.getLogger("citesearch.embeddings")


def _configure_torch() -> None:
    """Size torch's thread pools to the usable cores, once per process."""
    global _torch_configured
    with _torch_lock:
        if _torch_configured:
            return
        import torch

        torch.set_num_threads(_CORES)
        with contextlib.suppress(RuntimeError):  # already set, or inter-op work already started
            torch.set_num_interop_threads(1)
        _torch_configured = True


def _cpu_has_amx_bf16() -> bool:
    """True when the CPU has AMX bf16 tiles (Sapphire Rapids and later), where bf16 beats fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def default_precision() -> str:
    """The measured winner: bf16 on CPUs with AMX (2x faster, same retrieval quality), else fp32."""
    return "bf16" if _cpu_has_amx_bf16() else "fp32"


def resolve_precision(precision: str) -> str:
    """`auto` becomes :func:`default_precision`; anything else must be one of PRECISIONS."""
    value = precision.strip().lower() or "auto"
    if value == "auto":
        return default_precision()
    if value not in PRECISIONS:
        raise ModelError(
            f"embedding precision {precision!r}: expected one of {', '.join(PRECISIONS)} or auto"
        )
    return value


def _pick_prompts(name: str, configured: dict[str, str]) -> tuple[str, str]:
    """Query and passage prompts for a model family: e5 'query: '/'passage: ', bge-m3 none, else the model's own."""
    low = name.lower()
    if "bge-m3" in low:
        return "", ""
    if re.search(r"(?:^|[^a-z0-9])e5(?:[^a-z0-9]|$)", low) and "instruct" not in low:
        return E5_PROMPTS
    return configured.get("query", ""), configured.get("document", configured.get("passage", ""))


class Embedder:
    """Encode queries and passages into L2-normalised float32 vectors with one model, on one engine.

    Inputs longer than ``max_tokens`` are never silently truncated: the token sequence is cut into
    overlapping windows (each repeating the prompt and the special tokens, at most ``max_tokens``
    long, overlapping by at least 64 tokens), each window is embedded, the un-normalised pooled
    vectors are averaged and the mean is L2-normalised. Within a call, inputs are sorted by length
    so each batch pads little. Forward passes (a :class:`Forward`: torch or OpenVINO, at fp32, bf16
    or int8) run one at a time per process, on all usable cores (one core for query-sized inputs);
    tokenising, windowing, pooling and normalising are the same whatever the engine; outputs are float32.
    """

    def __init__(
        self,
        forward: Forward,
        tokenizer: Any,
        *,
        model_id: str,
        source: str,
        query_prompt: str,
        passage_prompt: str,
        max_tokens: int,
        pad_id: int,
        batch_size: int,
        choice_reason: str = "set",
    ) -> None:
        """Wrap a forward pass and its tokenizer; use :func:`load_embedder` rather than calling this.

        `tokenizer` is a `tokenizers.Tokenizer` or a transformers tokenizer (its fast backend is used when it has one).
        """
        self.model_id = model_id
        self.source = source
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.engine = forward.engine
        self.precision = forward.precision
        self.choice_reason = choice_reason
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._forward = forward
        self._backend: Any = (
            tokenizer if _is_fast_tokenizer(tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
        )
        if self._backend is not None:
            self._backend.no_truncation()
            self._backend.no_padding()
        self._hf_tokenizer: Any = tokenizer
        self._pad_id = pad_id
        widths: tuple[int, ...] = getattr(forward, "query_widths", ())
        self._query_split = max(widths, default=0)
        self._query_threads = ThreadChooser((_CORES, 1) if forward.engine == "openvino" else (1,))
        probe = self._embed_ids([self._tokenize([self.passage_prompt + "probe"])[0]])
        self.dim = int(probe.shape[1])

    @property
    def engine_name(self) -> str:
        """`engine-precision`, e.g. `openvino-bf16`: what /v1/stats and the start-up log show."""
        return f"{self.engine}-{self.precision}"

    @property
    def query_threads(self) -> int:
        """Threads a question's forward pass runs on now (measured; see embeddings/threads.py)."""
        return self._query_threads.current

    @property
    def query_shapes(self) -> tuple[tuple[int, int], ...]:
        """(tokens, threads) of the question copies compiled so far (OpenVINO)."""
        shapes: tuple[tuple[int, int], ...] = getattr(self._forward, "query_shapes", ())
        return shapes

    def prepare_questions(self) -> tuple[tuple[int, int], ...]:
        """Compile what question passes run on (OpenVINO's fixed-width copies) now rather than on
        the first questions (a service calls this before it is ready); returns their shapes."""
        compile_copies = getattr(self._forward, "compile_query_copies", None)
        return tuple(compile_copies()) if compile_copies is not None else ()

    # ------------------------------------------------------------------ public API

    def encode_queries(self, texts: list[str]) -> Vectors:
        """Embed search queries (with the model's query prompt); shape (n, dim), float32, unit length."""
        return self._encode([self.query_prompt + t for t in texts], self.query_prompt, query=True)

    def encode_passages(self, texts: list[str]) -> Vectors:
        """Embed passages (with the model's passage prompt); shape (n, dim), float32, unit length."""
        return self._encode([self.passage_prompt + t for t in texts], self.passage_prompt)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a passage (prompt and special tokens included)."""
        return self.count_tokens_batch([text])[0]

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        """:meth:`count_tokens` for many texts in one tokenizer call."""
        return [len(ids) for ids in self.token_ids(texts)]

    def token_ids(self, texts: list[str], *, query: bool = False) -> list[list[int]]:
        """Token ids the model sees before any windowing (prompt and special tokens included)."""
        if not texts:
            return []
        prompt = self.query_prompt if query else self.passage_prompt
        return self._tokenize([prompt + t for t in texts])

    def info(self) -> dict[str, str | int]:
        """Facts to record in an index manifest: identity, shape, limits, backend and source."""
        return {
            "model_id": self.model_id,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "precision": self.precision,
            "engine": self.engine,
            "backend": "openvino-cpu" if self.engine == "openvino" else "sentence-transformers/torch-cpu",
            "source": self.source,
            "query_prompt": self.query_prompt,
            "passage_prompt": self.passage_prompt,
        }

    def __repr__(self) -> str:
        return (
            f"Embedder({self.model_id!r}, dim={self.dim}, max_tokens={self.max_tokens}, {self.engine_name})"
        )

    # ------------------------------------------------------------------ internals

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids with special tokens and without truncation, one tokenizer batch call."""
        if self._backend is not None:
            fast = getattr(self._backend, "encode_batch_fast", None)
            encs = fast(texts) if fast is not None else self._backend.encode_batch(texts)
            return [list(e.ids) for e in encs]
        out = self._hf_tokenizer(
            texts, add_special_tokens=True, truncation=False, padding=False, verbose=False
        )
        return [list(x) for x in out["input_ids"]]

    def _windows(self, text: str, prompt: str) -> list[list[int]]:
        """Cut one over-long input into overlapping windows that each fit ``max_tokens``."""
        if self._backend is not None:
            enc = self._backend.encode(text)
            ids, special, offsets = list(enc.ids), list(enc.special_tokens_mask), list(enc.offsets)
        else:
            out = self._hf_tokenizer(
                text,
                return_special_tokens_mask=True,
                return_offsets_mapping=True,
                truncation=False,
                verbose=False,
            )
            ids, special, offsets = out["input_ids"], out["special_tokens_mask"], out["offset_mapping"]
        head = 0
        while head < len(ids) and special[head]:
            head += 1
        tail = len(ids)
        while tail > head and special[tail - 1]:
            tail -= 1
        prompt_end = len(prompt.rstrip())
        n_prompt = 0
        while prompt_end and head + n_prompt < tail and offsets[head + n_prompt][1] <= prompt_end:
            n_prompt += 1
        prefix, suffix = ids[: head + n_prompt], ids[tail:]
        body = ids[head + n_prompt : tail]
        size = self.max_tokens - len(prefix) - len(suffix)
        if size <= WINDOW_OVERLAP:  # prompt too long to repeat: fall back to bare windows
            prefix, body = ids[:head], ids[head:tail]
            size = self.max_tokens - len(prefix) - len(suffix)
        if size < 1:
            raise ModelError(f"{self.model_id}: max_tokens={self.max_tokens} leaves no room for text")
        if len(body) <= size:
            return [prefix + body + suffix]
        stride = max(1, size - WINDOW_OVERLAP)
        n = math.ceil((len(body) - size) / stride) + 1
        starts = [round(i * (len(body) - size) / (n - 1)) for i in range(n)]
        return [prefix + body[s : s + size] + suffix for s in starts]

    def _encode(self, texts: list[str], prompt: str, *, query: bool = False) -> Vectors:
        """Tokenize, window the over-long, embed sorted by length, average windows, L2-normalise."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        all_ids = self._tokenize(texts)
        seqs: list[list[int]] = []
        owner: list[int] = []
        for i, ids in enumerate(all_ids):
            parts = [ids] if len(ids) <= self.max_tokens else self._windows(texts[i], prompt)
            seqs.extend(parts)
            owner.extend([i] * len(parts))
        pooled = self._embed_ids(seqs, query=query)
        out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float64)
        np.add.at(out, np.asarray(owner), pooled.astype(np.float64))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: Vectors = (out / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def _batches(self, seqs: list[list[int]], split: int = 0) -> list[list[int]]:
        """Index groups, longest first: at most ``batch_size`` sequences and ``MAX_BATCH_TOKENS`` padded
        tokens; sequences of at most `split` tokens never share a group with longer ones."""
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        batches: list[list[int]] = []
        for i in order:
            # Sorted longest first, so a batch's first sequence sets its padded width.
            if batches and len(batches[-1]) < self.batch_size:
                width = len(seqs[batches[-1][0]])
                crosses = len(seqs[i]) <= split < width
                if width * (len(batches[-1]) + 1) <= MAX_BATCH_TOKENS and not crosses:
                    batches[-1].append(i)
                    continue
            batches.append([i])
        return batches

    def padded_shape(self, rows: int, width: int) -> tuple[int, int]:
        """The (rows, width) a pass of `rows` sequences of at most `width` tokens runs at."""
        step = SMALL_WIDTH_STEP if width <= SMALL_WIDTH else WIDTH_STEP
        padded_width = max(width, min(self.max_tokens, -(-width // step) * step))
        padded_rows = next(
            (b for b in ROW_BUCKETS if b >= rows), -(-rows // ROW_BUCKETS[-1]) * ROW_BUCKETS[-1]
        )
        return padded_rows, padded_width

    def _embed_ids(self, seqs: list[list[int]], *, query: bool = False) -> Vectors:
        """Pooled (not yet normalised) vectors for token-id sequences, batched by similar length
        (`query`: questions, which may run on the engine's fixed-width copies)."""
        result: Vectors | None = None
        with _inference_lock:
            # Short questions run on the engine's fixed-width copies, long ones on its dynamic model:
            # a short question batched with a long one would get another vector than alone.
            for idx in self._batches(seqs, self._query_split if query else 0):
                rows, width = self.padded_shape(len(idx), len(seqs[idx[0]]))
                small = width * rows <= SMALL_FORWARD_TOKENS
                threads = self._query_threads.pick() if small else _CORES
                input_ids = np.full((rows, width), self._pad_id, dtype=np.int64)
                mask = np.zeros((rows, width), dtype=np.int64)
                mask[len(idx) :, 0] = 1  # filler rows (shape buckets): one token each, outputs dropped
                for row, i in enumerate(idx):
                    n = len(seqs[i])
                    input_ids[row, :n] = seqs[i]
                    mask[row, :n] = 1
                t0 = time.perf_counter()
                emb = self._forward(input_ids, mask, threads, query=query)[: len(idx)]
                if small:
                    self._query_threads.record(threads, time.perf_counter() - t0, rows * width)
                if result is None:
                    result = np.empty((len(seqs), emb.shape[1]), dtype=np.float32)
                result[idx] = emb
        assert result is not None
        return result


def _is_fast_tokenizer(tokenizer: Any) -> bool:
    """True for a bare `tokenizers.Tokenizer` (the OpenVINO path loads no transformers)."""
    from tokenizers import Tokenizer

    return isinstance(tokenizer, Tokenizer)


def _resolve(model: str | Path | None, models_dir: Path | None) -> tuple[str, Path | None]:
    """Name the model to load: the argument, else the prepared default under `models_dir`."""
    if model is not None and not str(model).strip():
        model = None
    if model is None:
        path = default_model_path(models_dir)
        if not is_prepared(path):
            raise ModelError(f"the default embedding model is not prepared at {path}: {PREPARE_HINT}")
        return str(path), path
    text = str(model)
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve()), path.resolve()
    if isinstance(model, Path) or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ModelError(f"embedding model path {text!r} does not exist")
    return text, None


def query_shape_widths(count: int) -> tuple[int, ...]:
    """The first `count` question widths of the shape grid from 16 tokens (8 pads up to 16), at most
    up to SMALL_WIDTH: question passes up to the last of them run on copies compiled for these widths."""
    if count < 0:
        raise ModelError(f"query shapes {count}: expected 0 or more")
    first = 2 * SMALL_WIDTH_STEP
    return tuple(w for w in range(first, SMALL_WIDTH + 1, SMALL_WIDTH_STEP))[:count]


def load_embedder(
    model: str | Path | None = None,
    *,
    models_dir: Path | None = None,
    engine: str = "auto",
    precision: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    engines_dir: Path | None = None,
    query_shapes: int = DEFAULT_QUERY_SHAPES,
) -> Embedder:
    """Load an Embedder: None means the prepared default under `models_dir`; a path or a hub id otherwise.

    `engine` (auto, torch, openvino) and `precision` (auto, fp32, bf16, int8) are resolved against
    the engines `citesearch model prepare` built and measured beside a local model (`engines_dir`
    overrides where they are): `auto` is the fastest faithful one measured on this machine.
    `query_shapes`: how many question widths OpenVINO also compiles fixed-width copies for
    (query_shape_widths; 0 for none; torch ignores it). Local
    directories load with `local_files_only` (nothing touches the network); a string that is not
    an existing path is treated as a hub id and may download (torch only).
    """
    if batch_size < 1:
        raise ModelError(f"embedding batch size {batch_size}: expected a positive integer")
    name, path = _resolve(model, models_dir)
    if path is not None:
        if not path.is_dir():
            raise ModelError(f"embedding model path {path} is not a directory")
        if not any(path.iterdir()):
            raise ModelError(f"embedding model directory {path} is empty")
    if engines_dir is None and path is not None:
        engines_dir = engines_dir_for(path)
    engines = read_engines_manifest(engines_dir) if engines_dir is not None else None
    choice = choose(engine, precision, engines, fallback_precision=resolve_precision("auto"))
    manifest = read_manifest(path) if path is not None else None
    model_id = str(manifest["model_id"]) if manifest and manifest.get("model_id") else name
    if path is not None and path == default_model_path(models_dir).resolve() and not manifest:
        model_id = DEFAULT_MODEL_ID
    if choice.engine == "openvino":
        assert path is not None and engines_dir is not None  # choose() needs a manifest for OpenVINO
        parts = _openvino_parts(name, path, engines_dir, choice.precision, query_shape_widths(query_shapes))
    else:
        parts = _torch_parts(name, path, choice.precision)
    forward, tokenizer, configured, max_tokens, pad_id = parts
    query_prompt, passage_prompt = _pick_prompts(name, configured)
    try:
        emb = Embedder(
            forward,
            tokenizer,
            model_id=model_id,
            source=name,
            query_prompt=query_prompt,
            passage_prompt=passage_prompt,
            max_tokens=max_tokens,
            pad_id=pad_id,
            batch_size=batch_size,
            choice_reason=choice.reason,
        )
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"embedding model {name!r} loaded but cannot encode: {type(exc).__name__}: {exc}"
        ) from exc
    log.info("embedding engine %s for %s (%s)", emb.engine_name, model_id, choice.reason)
    return emb


_Parts = tuple[Forward, Any, dict[str, str], int, int]
"""A forward pass, its tokenizer, the model's configured prompts, its token limit and its pad id."""


def _torch_parts(name: str, path: Path | None, precision: str) -> _Parts:
    """sentence-transformers in torch: the model's modules before Normalize (we normalise after windows)."""
    _configure_torch()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            from sentence_transformers import SentenceTransformer
            from sentence_transformers.sentence_transformer.modules import Normalize
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            st = SentenceTransformer(name, device="cpu", local_files_only=path is not None)
        st.eval()
    except Exception as exc:
        hint = (
            f"; for the default model {PREPARE_HINT} (add --force to rebuild it)" if path is not None else ""
        )
        raise ModelError(f"cannot load embedding model {name!r}: {type(exc).__name__}: {exc}{hint}") from exc
    tok = st.tokenizer
    if tok is None:
        raise ModelError(f"{name}: the model has no text tokenizer")
    modules = [m for m in st if not isinstance(m, Normalize)]
    max_tokens = 512
    cfg = getattr(modules[0], "config", None)
    for value in (
        getattr(st, "max_seq_length", None),
        getattr(tok, "model_max_length", None),
        getattr(cfg, "max_position_embeddings", None),
    ):
        if isinstance(value, int) and 0 < value < 1_000_000:
            max_tokens = value
            break
    pad = tok.pad_token_id
    configured = dict(getattr(st, "prompts", None) or {})
    return TorchForward(modules, precision), tok, configured, max_tokens, int(pad) if pad is not None else 0


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when absent or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _openvino_parts(
    name: str, path: Path, engines_dir: Path, precision: str, query_widths: tuple[int, ...]
) -> _Parts:
    """The prepared OpenVINO IR and the model's own tokenizer.json: neither torch nor transformers is loaded.

    Limits and prompts come from the same files sentence-transformers reads, so tokens, windows
    and prompts are exactly the torch path's.
    """
    xml = ir_path(engines_dir, precision)
    if not xml.is_file():
        raise ModelError(f"the OpenVINO {precision} engine is not prepared for {name!r}: {PREPARE_HINT}")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as exc:
        raise ModelError(f"cannot load the tokenizer of {name!r}: {type(exc).__name__}: {exc}") from exc
    st_cfg = _read_json(path / "sentence_bert_config.json")
    tok_cfg = _read_json(path / "tokenizer_config.json")
    cfg = _read_json(path / "config.json")
    max_tokens = 512
    for value in (
        st_cfg.get("max_seq_length"),
        tok_cfg.get("model_max_length"),
        cfg.get("max_position_embeddings"),
    ):
        if isinstance(value, int) and 0 < value < 1_000_000:
            max_tokens = value
            break
    pad: int | None = tok.token_to_id(str(tok_cfg["pad_token"])) if tok_cfg.get("pad_token") else None
    if pad is None:
        pad = cfg["pad_token_id"] if isinstance(cfg.get("pad_token_id"), int) else 0
    prompts = _read_json(path / "config_sentence_transformers.json").get("prompts") or {}
    configured = {str(k): str(v) for k, v in prompts.items()} if isinstance(prompts, dict) else {}
    forward = OpenVINOForward(xml, precision, _CORES, query_widths)
    return forward, tok, configured, max_tokens, pad
