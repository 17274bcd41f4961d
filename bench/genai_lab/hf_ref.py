"""transformers side of the lab (runs in the project's .venv).

hf_ref.py ids    FOLDER OUT.json   chat-template input ids + greedy 64-token model.generate output per prompt
hf_ref.py speed  FOLDER THREADS    one cold process: model.generate timing, prints one JSON line
"""

import json
import resource
import sys
import time

T_PROCESS = time.time()

import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from prompts import FIDELITY_PROMPTS, NEW_TOKENS, SPEED_PROMPT  # noqa: E402


def load(folder):
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return tok, model


def prompt_ids(tok, prompt):
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


class Stamps(transformers.generation.streamers.BaseStreamer):
    """Records the time each new token reaches the streamer (the first put() is the prompt)."""

    def __init__(self):
        self.times, self.seen_prompt = [], False

    def put(self, value):
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        self.times.append(time.perf_counter())

    def end(self):
        pass


def generate(model, ids, streamer=None):
    x = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS, do_sample=False, streamer=streamer
        )
    return out[0, len(ids) :].tolist()


def cmd_ids(folder, out):
    torch.set_num_threads(2)
    tok, model = load(folder)
    rows = []
    for p in FIDELITY_PROMPTS:
        ids = prompt_ids(tok, p)
        rows.append({"prompt": p, "input_ids": ids, "greedy": generate(model, ids)})
    with open(out, "w") as f:
        json.dump(rows, f)
    print(f"wrote {len(rows)} rows to {out}")


def cmd_speed(folder, threads):
    torch.set_num_threads(threads)
    tok, model = load(folder)
    ids = prompt_ids(tok, SPEED_PROMPT)
    runs = []
    for i in range(4):  # first run is the cold one (its first token gives cold start)
        s = Stamps()
        t0 = time.perf_counter()
        wall0 = time.time()
        toks = generate(model, ids, s)
        if i == 0:
            first_token_wall = wall0 + (s.times[0] - t0)
        n = len(s.times)
        runs.append({"ttft_s": s.times[0] - t0, "decode_tps": (n - 1) / (s.times[-1] - s.times[0]), "tokens": n})
    print(
        json.dumps(
            {
                "engine": "transformers-fp32",
                "first_token_wall": first_token_wall,
                "runs": runs,
                "greedy": toks,
                "input_tokens": len(ids),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "ids":
        cmd_ids(sys.argv[2], sys.argv[3])
    else:
        cmd_speed(sys.argv[2], int(sys.argv[3]))
