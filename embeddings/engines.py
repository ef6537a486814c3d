"""Forward passes behind the one Embedder: the same network, mean pooling included, run by torch or OpenVINO.

A `Forward` takes a padded batch of token ids and its attention mask and returns the mean-pooled,
not yet normalised token embeddings (what sentence-transformers' Pooling module computes). The
Embedder does everything around it (tokenising, windowing, shape buckets, averaging windows,
normalising), so every engine sees exactly the same inputs and only the arithmetic differs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from citesearch.embeddings.errors import ModelError

ENGINES = ("torch", "openvino")
Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]
Shape = tuple[int, int]
"""(width in tokens, threads) of a fixed-shape copy."""
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""OpenVINO's inference precision per citesearch precision (int8 IRs carry their own int8 ops)."""
log = logging.getLogger("citesearch.embeddings")


class Forward(Protocol):
    """One network behind a uniform call: (ids, mask) of shape (rows, width) to pooled (rows, dim) vectors."""

    engine: str
    precision: str

    def __call__(self, input_ids: Ids, mask: Ids, threads: int, *, query: bool = False) -> Vectors:
        """`query`: a pass of questions, which an engine may run on a copy compiled for its width."""
        ...


class TorchForward:
    """sentence-transformers' modules (Transformer, Pooling) in torch, at fp32, bf16 or dynamic int8."""

    engine = "torch"

    def __init__(self, modules: list[Any], precision: str) -> None:
        """Take the model's modules up to (not including) Normalize and convert them to `precision`."""
        import torch

        self._torch = torch
        self._modules = modules
        self.precision = precision
        if precision == "bf16":
            for module in modules:
                module.to(torch.bfloat16)
        elif precision == "int8":
            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for module in modules:
                    quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)  # type: ignore[no-untyped-call]

    @property
    def network(self) -> Any:
        """The Hugging Face encoder inside (what OpenVINO converts)."""
        return self._modules[0].auto_model

    def __call__(self, input_ids: Ids, mask: Ids, threads: int, *, query: bool = False) -> Vectors:
        """Run the modules in inference mode on `threads` intra-op threads (shapes are all dynamic)."""
        torch = self._torch
        with torch.inference_mode():
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            features: dict[str, Any] = {
                "input_ids": torch.from_numpy(input_ids),
                "attention_mask": torch.from_numpy(mask),
            }
            for module in self._modules:
                features = module(features)
            out: Vectors = features["sentence_embedding"].float().numpy()
        return out


class OpenVINOForward:
    """An OpenVINO IR of the same network (pooling inside the graph), compiled for the CPU.

    Two compiled models share the weights of one read model: a one-thread one for query-sized
    passes (a second thread gains little there and stalls behind any other busy process) and one
    on all usable cores for batches. Each has a single infer request and one stream, so OpenVINO
    never runs two passes at once beside FAISS and numpy; the Embedder already serialises passes.

    Question passes of at most `query_widths[-1]` tokens run on copies compiled for a fixed width
    (16, 24 or 32 tokens) with any number of rows, one per width and thread count: with fully
    dynamic shapes the CPU plugin re-plans every pass, which costs about as much as the arithmetic
    of a short question (2-core EPYC, int8, one thread: 4.6 to 3.4 ms p50 over 287 XQuAD questions).
    A pass is padded up to its copy's width with masked tokens, which change nothing (attention and
    pooling skip them). These copies give bit-identical vectors whatever the width, row count or
    thread count, so a question's vector does not depend on what it was batched with; they are
    not bit-identical to the dynamic model in int8 (cosine down to 0.99982), so every short
    question runs on them, never on the dynamic model, and a question batch never mixes short and
    long ones (the Embedder splits it). Copies with one fixed row as well were faster still (2.8
    ms) but neither matched the any-row copies nor could serve batches, and took 2.3 s to compile.

    A copy takes ~0.4 s to compile and ~25 MB: a service compiles them all before it is ready
    (`compile_query_copies`); anything else (a one-shot CLI search) compiles one when its first
    question needs it.
    """

    engine = "openvino"

    def __init__(self, xml: Path, precision: str, cores: int, query_widths: Sequence[int] = ()) -> None:
        """Read and compile the IR at `xml` for `precision` (fp32, bf16 or int8); `query_widths`
        are the widths of the question copies (none: every pass on the dynamic model)."""
        import openvino as ov

        self.precision = precision
        self._core = core = ov.Core()
        try:
            self._model = model = core.read_model(str(xml))
        except Exception as exc:
            raise ModelError(
                f"cannot read the OpenVINO model {xml.name}: {type(exc).__name__}: {exc}"
            ) from exc
        self._config = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        self._small = core.compile_model(model, "CPU", {**self._config, "INFERENCE_NUM_THREADS": 1})
        self._large = (
            core.compile_model(model, "CPU", {**self._config, "INFERENCE_NUM_THREADS": cores})
            if cores > 1
            else self._small
        )
        self._requests = {1: self._small.create_infer_request(), cores: self._large.create_infer_request()}
        self._cores = cores
        self._lock = threading.Lock()
        self.query_widths = tuple(sorted(set(query_widths)))
        self._copies: dict[Shape, Any] = {}  # (width, threads) -> infer request (None: failed to compile)
        self.copy_passes = 0
        """Passes run on a question copy (for tests and benchmarks)."""

    @property
    def query_shapes(self) -> tuple[Shape, ...]:
        """(width, threads) of the question copies compiled so far."""
        copies = list(self._copies.items())  # a snapshot: a one-shot compile may add one meanwhile
        return tuple(sorted(s for s, r in copies if r is not None))

    def compile_query_copies(self) -> tuple[Shape, ...]:
        """Compile every question copy not compiled yet (each width, each thread count a pass runs
        on); returns the shapes in use."""
        with self._lock:
            for width in self.query_widths:
                for threads in sorted({1, self._cores}):
                    self._copy((width, threads))
        return self.query_shapes

    def _copy(self, shape: Shape) -> Any:
        """The infer request of the copy for `shape`, compiled on first use (None if it cannot be);
        the caller holds the pass lock."""
        if shape not in self._copies:
            width, threads = shape
            try:
                fixed = self._model.clone()
                fixed.reshape({"input_ids": [-1, width], "attention_mask": [-1, width]})
                config = {**self._config, "INFERENCE_NUM_THREADS": threads}
                self._copies[shape] = self._core.compile_model(fixed, "CPU", config).create_infer_request()
            except Exception:  # consistently the dynamic model for this shape, then
                log.exception("cannot compile the question copy for %d tokens on %d threads", width, threads)
                self._copies[shape] = None
        return self._copies[shape]

    def __call__(self, input_ids: Ids, mask: Ids, threads: int, *, query: bool = False) -> Vectors:
        """One synchronous inference on the request sized for `threads`, or for a question pass
        that fits a copy, on that copy (its inputs padded to the copy's width)."""
        width = input_ids.shape[1]
        fit = next((w for w in self.query_widths if w >= width), None) if query else None
        with self._lock:
            request = None
            if fit is not None:
                request = self._copy((fit, 1 if threads <= 1 else self._cores))
                if request is not None and fit > width:
                    input_ids = np.pad(input_ids, ((0, 0), (0, fit - width)))
                    mask = np.pad(mask, ((0, 0), (0, fit - width)))
            if request is None:
                request = self._requests[1 if threads <= 1 else self._cores]
            else:
                self.copy_passes += 1
            result = request.infer({"input_ids": input_ids, "attention_mask": mask}, share_inputs=True)
            out: Vectors = np.array(result[0], dtype=np.float32, copy=True)
        return out


def pooled_module(transformer: Any) -> Any:
    """A torch module computing mean-pooled token embeddings from (input_ids, attention_mask): what we convert."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    return Pooled(transformer).eval()


def convert_to_openvino(transformer: Any, xml: Path) -> None:
    """Convert a Hugging Face encoder (with mean pooling on top) to an OpenVINO IR with dynamic shapes.

    Weights are stored as fp16: the prepared model's own weights are fp16 (dequantised from 4 bits),
    so this loses nothing and halves the file; the CPU plugin computes in the compiled precision.
    """
    import openvino as ov
    import torch

    module = pooled_module(transformer)
    example = torch.ones((2, 16), dtype=torch.long)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        model = ov.convert_model(
            module,
            example_input={"input_ids": example, "attention_mask": example},
            input=[("input_ids", [-1, -1], ov.Type.i64), ("attention_mask", [-1, -1], ov.Type.i64)],
        )
    ov.save_model(model, str(xml), compress_to_fp16=True)


def quantize_openvino(xml: Path, out: Path, samples: list[tuple[Ids, Ids]]) -> None:
    """Static int8 quantisation of the IR at `xml` with NNCF, calibrated on `samples` (ids, mask) pairs.

    TRANSFORMER model type: SmoothQuant and fast bias correction, with the attention-sensitive ops
    left in floating point; not dynamic quantisation, which cost 11.6 MRR points here. The embedding
    tables (Gather) stay in floating point: quantised, every compiled model held its own dequantised
    fp32 copy of the 250k-token table (RSS 1.0 GB for the two compiled models, against 0.19 GB),
    for no speed (a lookup has no arithmetic to gain).
    """
    import logging

    import nncf
    import openvino as ov

    with contextlib.suppress(Exception):
        nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(str(xml))
    data = nncf.Dataset([{"input_ids": ids, "attention_mask": mask} for ids, mask in samples])
    # NNCF draws its own rich progress bars on stdout; the CLI shows ours.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quantized = nncf.quantize(
            model,
            data,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(samples),
            ignored_scope=nncf.IgnoredScope(types=["Gather"]),
        )
    ov.save_model(quantized, str(out), compress_to_fp16=False)
