"""Re-pack the builder's fp32 graph into int4 MatMulNBits that reproduce the GGUF's Q4_1 weights (runs in .venv-genai).

The folder was dequantised from Q4_1 (blocks of 32 along K, w = d*q + m, q in 0..15, and llama.cpp sets m to the
block minimum and d to (max - min)/15). So per block of the fp32 weight: s = (max - min)/15, q = round((w - min)/s),
and a FLOAT zero point zp = -min/s gives (q - zp)*s = w to float rounding: int4 storage, fp32-folder numerics.
A uint4 zero point (what the builder's is_symmetric=false writes) cannot hold -min/s, hence this script.
The tied lm_head / embedding (Q8_0 in the GGUF) stays fp32 unless --lm-head-int8 is given.

  .venv-genai/bin/python bench/genai_lab/q41_exact.py FP32_DIR OUT_DIR [--accuracy-level N] [--lm-head-int8]
"""

import argparse
import os
import shutil

import numpy as np
import onnx
from onnx import helper, numpy_helper

BLOCK = 32


def pack_block_quant(w, bits, symmetric):
    """w: [K, N] float32 -> (packed uint8 [N, K/32, 32*bits/8], scales [N*K/32], float zero points or None, err)."""
    k, n = w.shape
    blocks = w.T.reshape(n, k // BLOCK, BLOCK).astype(np.float64)
    if symmetric:  # Q8_0 style: s = absmax/127, q in -127..127, stored offset by 128 (MatMulNBits' default zp)
        s = np.abs(blocks).max(-1, keepdims=True) / 127
        s[s == 0] = 1
        q = np.clip(np.round(blocks / s), -127, 127) + 128
        zp = None
        recon = (q - 128) * s
    else:
        lo, hi = blocks.min(-1, keepdims=True), blocks.max(-1, keepdims=True)
        s = (hi - lo) / 15
        s[s == 0] = 1
        q = np.clip(np.round((blocks - lo) / s), 0, 15)
        zp = (-lo / s).astype(np.float32)
        recon = (q - zp.astype(np.float64)) * s.astype(np.float32).astype(np.float64)
    q = q.astype(np.uint8)
    if bits == 4:
        q = q[..., 0::2] | (q[..., 1::2] << 4)
    err = float(np.abs(recon - blocks).max())
    return q, s.astype(np.float32).reshape(-1), None if zp is None else zp.reshape(-1), err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--accuracy-level", type=int, default=4)
    ap.add_argument("--lm-head-int8", action="store_true")
    a = ap.parse_args()
    model = onnx.load(os.path.join(a.src, "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    nodes, worst = [], {}
    for node in model.graph.node:
        w_name = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else None
        is_head = w_name == "lm_head.MatMul.weight"
        if w_name not in inits or (is_head and not a.lm_head_int8):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[w_name]).astype(np.float32)
        bits = 8 if is_head else 4
        q, s, zp, err = pack_block_quant(w, bits, symmetric=is_head)
        worst[w_name] = err
        extra = [numpy_helper.from_array(q, w_name + "_q"), numpy_helper.from_array(s, w_name + "_scales")]
        ins = [node.input[0], w_name + "_q", w_name + "_scales"]
        if zp is not None:
            extra.append(numpy_helper.from_array(zp, w_name + "_zp"))
            ins.append(w_name + "_zp")
        model.graph.initializer.extend(extra)
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                ins,
                list(node.output),
                name=node.name + "_NBits",
                domain="com.microsoft",
                K=w.shape[0],
                N=w.shape[1],
                bits=bits,
                block_size=BLOCK,
                accuracy_level=a.accuracy_level,
            )
        )
    keep = {n for node in nodes for n in node.input}
    kept_inits = [i for i in model.graph.initializer if i.name in keep]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept_inits)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    os.makedirs(a.out, exist_ok=True)
    for name in os.listdir(a.src):
        if not name.startswith("model.onnx"):
            shutil.copy(os.path.join(a.src, name), a.out)
    onnx.save(model, os.path.join(a.out, "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    print(f"{len(worst)} MatMuls re-packed; worst |reconstruction - fp32| = {max(worst.values()):.3g}")


if __name__ == "__main__":
    main()
