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
import os
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
FIXED_AFTER = 2
FIXED_PRECISIONS = ("fp32", "bf16")
"""Precisions whose fixed-shape copies compute the dynamic model's vectors (fp32 exactly, bf16 to
cosine 0.9999999). int8 copies did not (cosine down to 0.99974 on the 2-core EPYC): a question's
vector would depend on which compiled model ran it (alone on a copy, or batched with a longer
question; before or after its copy was ready), and the pages of one ranking could disagree."""
"""Lone questions of a width before its fixed-shape copy is compiled: a one-shot CLI search
compiles nothing."""


class Forward(Protocol):
    """One network behind a uniform call: (ids, mask) of shape (rows, width) to pooled (rows, dim) vectors."""

    engine: str
    precision: str

    def __call__(self, input_ids: Ids, mask: Ids, threads: int, *, fixed_shape: bool = False) -> Vectors:
        """`fixed_shape`: a lone question's pass, which an engine may run on a fixed-shape copy."""
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

    def __call__(self, input_ids: Ids, mask: Ids, threads: int, *, fixed_shape: bool = False) -> Vectors:
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

    Passes of one sequence (a lone question) also get copies compiled for fixed widths
    (`static_widths`), one per thread count the pass runs on: with dynamic shapes the CPU plugin
    infers shapes and plans memory on every pass, which costs as much as the arithmetic of a
    short question (2-core EPYC, int8, a 24-token question: 3.3 to 2.4 ms on one thread, 2.2 to
    1.7 ms on two; the same vectors as the dynamic model: min cosine to fp32 0.99624 against
    0.99622). A pass narrower than a fixed width is padded up to it with masked tokens, which
    change nothing: attention and pooling both skip them. Only at FIXED_PRECISIONS (int8
    copies computed other vectors than the dynamic model; the timings above were measured on them).

    A copy takes ~2.5 s to compile and holds its own packed weights (~65 MB in int8), so it is
    compiled on a background thread (one copy at a time) once FIXED_AFTER questions of its width
    and thread count came, not at load: a process that never answers questions (`citesearch
    ingest`, a build worker) never pays, and until its copy is ready a question runs on the
    dynamic model.
    """

    engine = "openvino"

    def __init__(self, xml: Path, precision: str, cores: int, static_widths: Sequence[int] = ()) -> None:
        """Read and compile the IR at `xml` for `precision` (fp32, bf16 or int8); `static_widths`
        are the question widths that get fixed-shape copies on first use."""
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
        self._widths = tuple(sorted(set(static_widths))) if precision in FIXED_PRECISIONS else ()
        self._static: dict[Shape, Any] = {}  # (width, threads) -> infer request, filled by the compiler
        self._asked: dict[Shape, int] = {}  # lone questions seen per shape before its copy was ready
        self._queue: list[Shape] = []
        self._compiler: threading.Thread | None = None
        self._compiled = threading.Condition()
        self.static_passes = 0
        """Passes run on a fixed-shape copy (for tests and benchmarks)."""

    @property
    def fixed_shapes(self) -> tuple[Shape, ...]:
        """(width, threads) of the fixed-shape copies compiled and in use now."""
        return tuple(sorted(self._static))

    def wait_fixed(self, shape: Shape, timeout: float) -> bool:
        """Block until the copy for `shape` (width, threads) is in use (False on timeout)."""
        with self._compiled:
            return self._compiled.wait_for(lambda: shape in self._static, timeout)

    def wait_compiled(self, timeout: float) -> bool:
        """Block until no fixed-shape copy waits to be compiled (False on timeout): for benchmarks."""
        with self._compiled:
            return self._compiled.wait_for(lambda: self._compiler is None, timeout)

    def stop_compiling(self) -> None:
        """Drop the copies queued but not yet compiling (asked for again by later questions), so
        a closing process waits at most for the one in progress."""
        with self._compiled:
            for shape in self._queue:
                self._asked.pop(shape, None)
            self._queue.clear()

    def _ask(self, shape: Shape) -> None:
        """Count a lone question of `shape`; queue its copy's compilation at the FIXED_AFTER-th."""
        self._asked[shape] = self._asked.get(shape, 0) + 1
        if self._asked[shape] != FIXED_AFTER:
            return
        with self._compiled:
            self._queue.append(shape)
            if self._compiler is None:
                # Not a daemon: a process that exits mid-compile waits for it (seconds) rather than
                # aborting inside OpenVINO.
                self._compiler = threading.Thread(target=self._compile_queued, name="openvino-compile")
                self._compiler.start()

    def _compile_queued(self) -> None:
        """Compile the queued shapes' copies, one at a time, at the lowest CPU priority, then stop."""
        # ~2.5 s of CPU per copy: questions and writes (the normal-priority threads) go first.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while True:
            with self._compiled:
                if not self._queue:
                    self._compiler = None
                    self._compiled.notify_all()
                    return
                shape = self._queue.pop(0)
            width, threads = shape
            try:
                fixed = self._model.clone()
                fixed.reshape({"input_ids": [1, width], "attention_mask": [1, width]})
                config = {**self._config, "INFERENCE_NUM_THREADS": threads}
                request = self._core.compile_model(fixed, "CPU", config).create_infer_request()
            except Exception:  # the dynamic model keeps serving that shape
                log.exception(
                    "cannot compile the fixed-shape copy for %d tokens on %d threads", width, threads
                )
                continue
            with self._compiled:
                self._static[shape] = request
                self._compiled.notify_all()

    def _fixed(self, input_ids: Ids, mask: Ids, threads: int) -> tuple[Any, Ids, Ids] | None:
        """The fixed-shape request for a lone question's pass and its inputs padded to its width,
        when that copy is ready (else it is asked for)."""
        rows, width = input_ids.shape
        fit = next((w for w in self._widths if w >= width), None)
        if rows != 1 or fit is None:
            return None
        shape = (fit, 1 if threads <= 1 else self._cores)
        request = self._static.get(shape)
        if request is None:
            self._ask(shape)
            return None
        if fit > width:
            input_ids = np.pad(input_ids, ((0, 0), (0, fit - width)))
            mask = np.pad(mask, ((0, 0), (0, fit - width)))
        return request, input_ids, mask

    def __call__(self, input_ids: Ids, mask: Ids, threads: int, *, fixed_shape: bool = False) -> Vectors:
        """One synchronous inference: a lone question (`fixed_shape`) on a fixed-width copy when one
        is ready, else on the request sized for `threads`."""
        with self._lock:
            fixed = self._fixed(input_ids, mask, threads) if fixed_shape else None
            if fixed is not None:
                request, input_ids, mask = fixed
                self.static_passes += 1
            else:
                request = self._requests[1 if threads <= 1 else self._cores]
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
