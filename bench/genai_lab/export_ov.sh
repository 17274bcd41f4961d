#!/usr/bin/env bash
# Export the dequantised folder to OpenVINO IR with optimum-intel (in .venv-ov), one folder per weight format.
set -u
IN=${IN:-.cache/smollm2-folder}
OUT=${OUT:-.cache/ov-models}
export() {  # name weight-format [extra args...]
  local name=$1 fmt=$2; shift 2
  [ -f "$OUT/$name/openvino_model.xml" ] && { echo "cached $name"; return; }
  /usr/bin/time -f "$name: %e s, peak %M KB" nice -n 19 .venv-ov/bin/optimum-cli export openvino --model "$IN" \
    --task text-generation-with-past --weight-format "$fmt" "$@" "$OUT/$name" > "$OUT/export-$name.log" 2>&1 \
    || { echo "FAILED $name (see $OUT/export-$name.log)"; tail -5 "$OUT/export-$name.log"; }
  tail -1 "$OUT/export-$name.log"
}
export fp32 fp32
export int8 int8
export int4 int4
export int4-asym-g32-r1 int4 --group-size 32 --ratio 1.0
