"""OpenVINO GenAI side of the lab (runs in .venv-ov, see README.md beside this file).

ov_genai_lab.py speed    MODEL_DIR THREADS REF.json   one cold process: timing, prints one JSON line
ov_genai_lab.py fidelity MODEL_DIR THREADS REF.json   greedy equality / prefix / teacher-forced top-1 vs REF
"""

import json
import os
import resource
import sys
import time

T_PROCESS = time.time()

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import openvino_genai as ovg  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from prompts import NEW_TOKENS  # noqa: E402


class Stamps(ovg.StreamerBase):
    """Records the time each new token id reaches the streamer."""

    def __init__(self):
        super().__init__()
        self.times = []

    def write(self, token):
        n = len(token) if isinstance(token, list) else 1
        self.times.extend([time.perf_counter()] * n)
        return ovg.StreamingStatus.RUNNING  # returning STOP here is how a deadline would end decoding

    def end(self):
        pass


def load(model_dir, threads):
    props = {"INFERENCE_NUM_THREADS": threads}
    if os.environ.get("OV_F32"):  # the CPU plugin runs bf16 by default where the CPU has AVX512_BF16/AMX
        props.update(INFERENCE_PRECISION_HINT="f32", KV_CACHE_PRECISION="f32")
    return ovg.LLMPipeline(model_dir, "CPU", **props)


def greedy(pipe, ids, streamer=None, max_new=NEW_TOKENS):
    cfg = ovg.GenerationConfig()
    cfg.max_new_tokens, cfg.do_sample = max_new, False
    cfg.eos_token_id = 2
    x = ov.Tensor(np.array([ids], dtype=np.int64))
    m = ov.Tensor(np.ones((1, len(ids)), dtype=np.int64))
    res = pipe.generate(ovg.TokenizedInputs(x, m), cfg, streamer)
    return [int(t) for t in res.tokens[0]]


def cmd_speed(model_dir, threads, ref):
    pipe = load(model_dir, threads)
    row = ref[0]
    runs = []
    for i in range(4):
        s = Stamps()
        t0 = time.perf_counter()
        wall0 = time.time()
        toks = greedy(pipe, row["input_ids"], s)
        if i == 0:
            first_token_wall = wall0 + (s.times[0] - t0)
        n = len(s.times)
        runs.append({"ttft_s": s.times[0] - t0, "decode_tps": (n - 1) / (s.times[-1] - s.times[0]), "tokens": n})
    print(
        json.dumps(
            {
                "engine": "ov-genai:" + model_dir.rstrip("/").rsplit("/", 1)[-1],
                "first_token_wall": first_token_wall,
                "runs": runs,
                "greedy": toks,
                "input_tokens": len(row["input_ids"]),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def prefix_len(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def cmd_fidelity(model_dir, threads, ref):
    pipe = load(model_dir, threads)
    props = {"INFERENCE_NUM_THREADS": threads}
    if os.environ.get("OV_F32"):
        props.update(INFERENCE_PRECISION_HINT="f32", KV_CACHE_PRECISION="f32")
    compiled = ov.Core().compile_model(f"{model_dir}/openvino_model.xml", "CPU", props)
    names = {p.get_any_name() for p in compiled.inputs}
    rows, agree, total = [], 0, 0
    for row in ref:
        ids, want = row["input_ids"], row["greedy"]
        got = greedy(pipe, ids)
        seq = np.array([ids + want[:-1]], dtype=np.int64)
        feed = {"input_ids": seq, "attention_mask": np.ones_like(seq)}
        if "position_ids" in names:
            feed["position_ids"] = np.arange(seq.shape[1], dtype=np.int64)[None]
        if "beam_idx" in names:
            feed["beam_idx"] = np.zeros(1, dtype=np.int32)
        req = compiled.create_infer_request()  # fresh KV state
        logits = req.infer(feed)[compiled.output("logits")][0]
        top1 = logits[len(ids) - 1 :].argmax(-1).tolist()
        hits = sum(int(a == b) for a, b in zip(top1, want))
        agree, total = agree + hits, total + len(want)
        rows.append(
            {
                "prompt": row["prompt"][:40],
                "equal": got == want,
                "prefix": prefix_len(got, want),
                "ref_len": len(want),
                "got_len": len(got),
                "tf_top1": hits / len(want),
            }
        )
    print(
        json.dumps(
            {
                "engine": "ov-genai:"
                + model_dir.rstrip("/").rsplit("/", 1)[-1]
                + ("+f32" if os.environ.get("OV_F32") else ""),
                "all_equal": all(r["equal"] for r in rows),
                "equal_prompts": sum(r["equal"] for r in rows),
                "prompts": len(rows),
                "mean_prefix": sum(r["prefix"] for r in rows) / len(rows),
                "min_prefix": min(r["prefix"] for r in rows),
                "tf_top1": agree / total,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    cmd, model_dir, threads, ref_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with open(ref_path) as f:
        ref = json.load(f)
    {"speed": cmd_speed, "fidelity": cmd_fidelity}[cmd](model_dir, threads, ref)
