"""ONNX Runtime GenAI side of the lab (runs in .venv-genai, see README.md beside this file).

  ort_genai_lab.py speed    MODEL_DIR THREADS REF.json   one cold process: timing, prints one JSON line
  ort_genai_lab.py fidelity MODEL_DIR THREADS REF.json   greedy equality / prefix / teacher-forced top-1 vs REF

REF.json is hf_ref.py's output: the chat-template input ids and transformers' greedy tokens per prompt, so both
engines decode from the same ids.
"""

import json
import resource
import sys
import time

T_PROCESS = time.time()

import numpy as np  # noqa: E402
import onnxruntime_genai as og  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from prompts import NEW_TOKENS  # noqa: E402


def load(model_dir, threads):
    cfg = og.Config(model_dir)
    opts = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    cfg.overlay(json.dumps({"model": {"decoder": {"session_options": opts}}}))
    model = og.Model(cfg)
    return model, og.Tokenizer(model)


def greedy(model, ids, stamps=None, max_new=NEW_TOKENS):
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + max_new, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)  # prefill: computes the logits of the first new token
    out = []
    while not gen.is_done():  # stops at EOS or max_length; a deadline check would go here, between tokens
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
        if stamps is not None:
            stamps.append(time.perf_counter())
    return out


def cmd_speed(model_dir, threads, ref):
    model, tok = load(model_dir, threads)
    row = ref[0]
    text = tok.apply_chat_template(json.dumps([{"role": "user", "content": row["prompt"]}]), add_generation_prompt=True)
    same_ids = tok.encode(text).tolist() == row["input_ids"]
    runs = []
    for i in range(4):
        stamps = []
        t0 = time.perf_counter()
        wall0 = time.time()
        toks = greedy(model, row["input_ids"], stamps)
        if i == 0:
            first_token_wall = wall0 + (stamps[0] - t0)
        n = len(stamps)
        runs.append({"ttft_s": stamps[0] - t0, "decode_tps": (n - 1) / (stamps[-1] - stamps[0]), "tokens": n})
    print(
        json.dumps(
            {
                "engine": "ort-genai:" + model_dir.rstrip("/").rsplit("/", 1)[-1],
                "first_token_wall": first_token_wall,
                "runs": runs,
                "greedy": toks,
                "input_tokens": len(row["input_ids"]),
                "tokenizer_ids_equal": same_ids,
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
    model, _ = load(model_dir, threads)
    rows, agree, total = [], 0, 0
    for row in ref:
        ids, want = row["input_ids"], row["greedy"]
        got = greedy(model, ids)
        # teacher forcing: the reference continuation fed as input, argmax at each position that predicts it
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + len(want), do_sample=False)
        gen = og.Generator(model, params)
        gen.append_tokens(ids + want[:-1])
        logits = np.asarray(gen.get_output("logits"))[0]
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
                "engine": "ort-genai:" + model_dir.rstrip("/").rsplit("/", 1)[-1],
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
