"""GGUF reading and writing for the GPU check's Python side (numpy only; no gguf-py needed).

- `Gguf(path)`: metadata (decoded, and each entry's raw bytes for copying) and tensors as numpy
  memmaps shaped as PyTorch holds them (a ggml [ne0, ne1] tensor is a (ne1, ne0) array).
- `write_gguf(path, kvs, tensors)`: writes GGUF v3; `kvs` are raw entries (from `Gguf.raw` or
  `kv_*` below), `tensors` are (name, array or a callable returning one) in file order.
- `gguf_to_hf(...)`: a LLaMA GGUF's tensors under Hugging Face names with q/k rows in Hugging
  Face's order (the inverse of llama.cpp's permutation), and a GGUF LoRA's tensors under PEFT's
  names; checked against the project's own writer (src/synth/hf.ts) by `peers.py --selftest`.
"""
import json
import os
import struct

import numpy as np

GGML_F32, GGML_F16 = 0, 1
_NP = {GGML_F32: np.float32, GGML_F16: np.float16}
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
T_STRING, T_ARRAY, T_U32, T_F32 = 8, 9, 4, 6


class Gguf:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            buf = f.read(64 << 20)  # metadata (the LLaMA vocabulary is about 1 MB) and tensor infos
        self._b = buf
        self._p = 0
        if self._take(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version, n_tensors, n_kv = struct.unpack("<IQQ", self._take(20))
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        self.meta, self.raw = {}, {}
        for _ in range(n_kv):
            start = self._p
            key = self._str()
            vtype = self._u32()
            self.meta[key] = self._value(vtype)
            self.raw[key] = buf[start:self._p]
        self.tensors = {}
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            nd = self._u32()
            dims = struct.unpack(f"<{nd}Q", self._take(8 * nd))
            ttype = self._u32()
            (offset,) = struct.unpack("<Q", self._take(8))
            infos.append((name, dims, ttype, offset))
        align = int(self.meta.get("general.alignment", 32))
        data = (self._p + align - 1) // align * align
        for name, dims, ttype, offset in infos:
            if ttype not in _NP:
                raise ValueError(f"{path}: tensor {name} has ggml type {ttype} (only F32 and F16 here)")
            shape = tuple(reversed(dims))
            self.tensors[name] = np.memmap(path, dtype=_NP[ttype], mode="r", offset=data + offset, shape=shape)

    def _take(self, n):
        b = self._b[self._p:self._p + n]
        if len(b) != n:
            raise ValueError(f"{self.path}: truncated GGUF header")
        self._p += n
        return b

    def _u32(self):
        return struct.unpack("<I", self._take(4))[0]

    def _str(self):
        (n,) = struct.unpack("<Q", self._take(8))
        return self._take(n).decode("utf-8", errors="replace")

    def _value(self, t):
        if t == T_STRING:
            return self._str()
        if t == T_ARRAY:
            et = self._u32()
            (n,) = struct.unpack("<Q", self._take(8))
            if et in _SCALAR and et != 7:
                fmt = _SCALAR[et]
                size = struct.calcsize(fmt)
                arr = np.frombuffer(self._take(n * size), dtype=np.dtype(fmt))
                return arr
            return [self._value(et) for _ in range(n)]
        fmt = _SCALAR[t]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def num(self, key, default=None):
        v = self.meta.get(key, default)
        if v is None:
            raise KeyError(f"{self.path}: no {key}")
        return v


def _gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv_str(key, value):
    return _gstr(key) + struct.pack("<I", T_STRING) + _gstr(value)


def kv_u32(key, value):
    return _gstr(key) + struct.pack("<II", T_U32, int(value))


def kv_f32(key, value):
    return _gstr(key) + struct.pack("<If", T_F32, float(value))


def write_gguf(path, kvs, tensors, align=32):
    """Writes GGUF v3 atomically. tensors: list of (name, shape, ggml type, producer) where
    producer() returns a C-contiguous array of that shape and type."""
    infos = []
    offset = 0
    for name, shape, ttype, _ in tensors:
        nbytes = int(np.prod(shape)) * np.dtype(_NP[ttype]).itemsize
        infos.append(_gstr(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *reversed(shape)) + struct.pack("<IQ", ttype, offset))
        offset += (nbytes + align - 1) // align * align
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(infos)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(head)
        f.write(b"\0" * ((-len(head)) % align))
        for name, shape, ttype, produce in tensors:
            arr = np.ascontiguousarray(produce())
            if arr.shape != tuple(shape) or arr.dtype != _NP[ttype]:
                raise ValueError(f"{name}: produced {arr.shape} {arr.dtype}, expected {shape} {_NP[ttype]}")
            f.write(memoryview(arr).cast("B"))
            f.write(b"\0" * ((-arr.nbytes) % align))
    os.replace(tmp, path)


def unpermute_rows(w, n_head):
    """llama.cpp's q/k row order -> Hugging Face's (rows = output features, grouped by head)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


HF_PART = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}


def hparams(g):
    a = g.meta["general.architecture"]
    return {
        "vocab": int(g.meta.get(f"{a}.vocab_size", len(g.meta.get("tokenizer.ggml.tokens", [])))),
        "embd": int(g.num(f"{a}.embedding_length")),
        "layers": int(g.num(f"{a}.block_count")),
        "heads": int(g.num(f"{a}.attention.head_count")),
        "heads_kv": int(g.meta.get(f"{a}.attention.head_count_kv", g.meta[f"{a}.attention.head_count"])),
        "ff": int(g.num(f"{a}.feed_forward_length")),
        "ctx": int(g.num(f"{a}.context_length")),
        "eps": float(g.num(f"{a}.attention.layer_norm_rms_epsilon")),
        "rope_base": float(g.meta.get(f"{a}.rope.freq_base", 10000.0)),
    }


def hf_name(gguf_name):
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    _, layer, part, _ = gguf_name.split(".")
    return f"model.layers.{layer}.{HF_PART[part]}.weight"


def gguf_to_hf(g):
    """Yields (Hugging Face name, numpy array) for every tensor of a LLaMA GGUF model."""
    hp = hparams(g)
    for name, arr in g.tensors.items():
        part = name.split(".")[2] if name.startswith("blk.") else ""
        if part == "attn_q":
            arr = unpermute_rows(arr, hp["heads"])
        elif part == "attn_k":
            arr = unpermute_rows(arr, hp["heads_kv"])
        yield hf_name(name), arr


def lora_to_peft(lora, hp):
    """Yields (layer, module, 'A'|'B', array) of a GGUF LoRA: lora_a (r, in), lora_b (out, r), q/k
    rows of lora_b in Hugging Face's order."""
    for name, arr in lora.tensors.items():
        _, layer, part, _, ab = name.split(".")
        ab = ab[-1].upper()
        if ab == "B" and part == "attn_q":
            arr = unpermute_rows(arr, hp["heads"])
        elif ab == "B" and part == "attn_k":
            arr = unpermute_rows(arr, hp["heads_kv"])
        yield int(layer), HF_PART[part].split(".")[1], ab, arr


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    dt = {"F32": np.float32, "F16": np.float16}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = np.memmap(path, dtype=dt[info["dtype"]], mode="r", offset=8 + n + b, shape=tuple(info["shape"]))
        assert out[name].nbytes == e - b
    return out
