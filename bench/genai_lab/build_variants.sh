#!/usr/bin/env bash
# Build the ONNX Runtime GenAI graphs measured by the lab from the dequantised folder (see README.md here).
set -u
IN=${IN:-.cache/smollm2-folder}
OUT=${OUT:-.cache/genai-models}
PY=${PY:-.venv-genai/bin/python}
build() {  # name precision [extra_options...]
  local name=$1 prec=$2; shift 2
  [ -f "$OUT/$name/model.onnx" ] && { echo "cached $name"; return; }
  local extra=(); [ $# -gt 0 ] && extra=(--extra_options "$@")
  /usr/bin/time -f "$name: %e s, peak %M KB" nice -n 19 "$PY" -m onnxruntime_genai.models.builder \
    -i "$IN" -o "$OUT/$name" -p "$prec" -e cpu -c "$OUT/cache_dir" "${extra[@]}" > "$OUT/build-$name.log" 2>&1 \
    || { echo "FAILED $name (see $OUT/build-$name.log)"; tail -3 "$OUT/build-$name.log"; }
  tail -1 "$OUT/build-$name.log"
}
build fp32 fp32
build int8 int8
build int4 int4
build int4-asym int4 is_symmetric=false
build int4-asym-lm8 int4 is_symmetric=false matmul_mixed_precision=last_matmul:int8
build int4-asym-acc1 int4 is_symmetric=false accuracy_level=1
build int4-kquant int4 algo_config=k_quant_mixed
build int8-acc1 int8 accuracy_level=1
