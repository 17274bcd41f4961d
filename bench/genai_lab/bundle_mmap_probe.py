"""How can an ONNX Runtime GenAI graph be loaded out of the project's single-file bundle? (runs in .venv-genai)

Tries, on a stand-in bundle (a header, then the payload at a 64 KiB-aligned offset), memory-mapped with mmap:
  symlink   model.onnx's external data rewritten to point into the bundle through a symlink in a temp folder
  inmem     graph bytes and external-data bytes handed over with Config.add_model_data
  embedded  one self-contained .onnx (weights inside, < 2 GiB) as the payload, a memoryview of the mmap handed
            over with Config.add_model_data (genai_config.json + tokenizer files in a temp folder)
and prints, per way, whether it loads, whether its greedy tokens equal the plain folder's, load time, RSS growth.
NB: add_model_data keeps a pointer, not a reference: the caller must keep the buffer alive (else: segfault).

  .venv-genai/bin/python bench/genai_lab/bundle_mmap_probe.py MODEL_DIR REF.json
"""

import json
import mmap
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime_genai as og

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from ort_genai_lab import greedy, load

ALIGN = 64 * 1024
KEEP = []  # buffers handed to add_model_data must outlive the model


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def stand_in_bundle(work, payload_path):
    bundle = os.path.join(work, "stand-in.bundle")
    with open(bundle, "wb") as out, open(payload_path, "rb") as data:
        out.write(b"H" * ALIGN)
        shutil.copyfileobj(data, out)
    return bundle


def side_files(model_dir, dest):
    os.makedirs(dest)
    for name in os.listdir(model_dir):
        if not name.startswith("model.onnx"):
            shutil.copy(os.path.join(model_dir, name), dest)
    return dest


def config(folder):
    cfg = og.Config(folder)
    cfg.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": 2}}}}))
    return cfg


def way_symlink(model_dir, work):
    bundle = stand_in_bundle(work, os.path.join(model_dir, "model.onnx.data"))
    graph = onnx.load(os.path.join(model_dir, "model.onnx"), load_external_data=False)
    for init in graph.graph.initializer:
        for kv in init.external_data:
            if kv.key == "location":
                kv.value = "weights.bin"
            elif kv.key == "offset":
                kv.value = str(ALIGN + int(kv.value))
    folder = side_files(model_dir, os.path.join(work, "symlink"))
    onnx.save(graph, os.path.join(folder, "model.onnx"))
    os.symlink(bundle, os.path.join(folder, "weights.bin"))
    return og.Model(config(folder))


def way_inmem(model_dir, work):
    bundle = stand_in_bundle(work, os.path.join(model_dir, "model.onnx.data"))
    mm = mmap.mmap(os.open(bundle, os.O_RDONLY), 0, access=mmap.ACCESS_READ)
    folder = side_files(model_dir, os.path.join(work, "inmem"))
    cfg = config(folder)
    graph = Path(model_dir, "model.onnx").read_bytes()
    data = memoryview(mm)[ALIGN:]
    KEEP.extend([mm, graph, data])
    cfg.add_model_data("model.onnx", graph)
    cfg.add_model_data("model.onnx.data", data)
    return og.Model(cfg)


def way_embedded(model_dir, work):
    whole = os.path.join(work, "embedded.onnx")
    onnx.save(onnx.load(os.path.join(model_dir, "model.onnx")), whole)  # weights inside the one file
    bundle = stand_in_bundle(work, whole)
    mm = mmap.mmap(os.open(bundle, os.O_RDONLY), 0, access=mmap.ACCESS_READ)
    data = memoryview(mm)[ALIGN:]
    KEEP.extend([mm, data])
    cfg = config(side_files(model_dir, os.path.join(work, "embedded")))
    cfg.add_model_data("model.onnx", data)
    return og.Model(cfg)


def main(model_dir, ref_path):
    row = json.loads(Path(ref_path).read_text())[0]
    want = greedy(load(model_dir, 2)[0], row["input_ids"])
    for name, way in [("symlink", way_symlink), ("inmem", way_inmem), ("embedded", way_embedded)]:
        work = tempfile.mkdtemp(prefix=f"probe-{name}-")
        r0, t0 = rss_mb(), time.perf_counter()
        try:
            model = way(model_dir, work)
        except Exception as e:
            print(json.dumps({"way": name, "loads": False, "error": str(e)[:300]}), flush=True)
            continue
        load_s, grew = time.perf_counter() - t0, rss_mb() - r0
        got = greedy(model, row["input_ids"])
        print(
            json.dumps(
                {
                    "way": name,
                    "loads": True,
                    "greedy_equal": got == want,
                    "load_s": round(load_s, 3),
                    "rss_growth_mb": round(grew),
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
