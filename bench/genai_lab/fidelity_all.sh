#!/usr/bin/env bash
# Fidelity of every built ORT GenAI graph (and OpenVINO IR, when .venv-ov and .cache/ov-models exist) vs hf_ref.json.
set -u
REF=.cache/genai-lab/hf_ref.json
for d in .cache/genai-models/*/; do
  n=$(basename "$d"); [ -f "$d/model.onnx" ] || continue
  out=.cache/genai-lab/fid-ort-$n.json; [ -s "$out" ] || nice -n 19 .venv-genai/bin/python bench/genai_lab/ort_genai_lab.py fidelity "$d" 2 $REF > "$out"
done
for d in .cache/ov-models/*/; do
  [ -f "$d/openvino_model.xml" ] || continue
  n=$(basename "$d"); out=.cache/genai-lab/fid-ov-$n.json
  [ -s "$out" ] || nice -n 19 .venv-ov/bin/python bench/genai_lab/ov_genai_lab.py fidelity "$d" 2 $REF > "$out"
done
python3 - <<'PY'
import glob, json
for f in sorted(glob.glob(".cache/genai-lab/fid-o*.json")):
    try:
        d = json.load(open(f))
    except Exception as e:
        print(f, "unreadable", e); continue
    print(f"{d['engine']:28s} equal {d['equal_prompts']}/{d['prompts']}  mean prefix {d['mean_prefix']:.1f}  "
          f"min prefix {d['min_prefix']}  teacher-forced top-1 {d['tf_top1']:.4f}")
PY
