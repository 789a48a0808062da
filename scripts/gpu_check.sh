#!/usr/bin/env bash
# End-to-end check on a GPU host, with or without TensorRT: eager PyTorch, ONNX Runtime CUDA
# (FP32, FP16, INT8 Q/DQ), and ONNX Runtime's TensorRT provider and TensorRT plans only when
# installed. Every artifact runs at batches 1 -> 8 -> 1, plain and with CUDA graphs, against eager
# FP32; then bench; one table, and benchmarks/gpu_check_<model>_<environment>.json.
#
#   pip install -e ".[gpu]"     # onnxruntime-gpu (+ tensorrt 10.x), with a CUDA build of torch
#   bash scripts/gpu_check.sh   # MODEL=ran92 OUT=gpu_check CHECKPOINT=w.pt CALIB_DATA=imgs/
#
# Without a CUDA GPU it prints why and exits 0 (nothing to check here).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
model=${MODEL:-ran92}
out=${OUT:-gpu_check}
if ! reason=$("$py" - <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit(f"PyTorch {torch.__version__} sees no CUDA GPU (CUDA build: {torch.version.cuda})")
PY
); then
  echo "gpu_check: SKIPPED: ${reason:-no CUDA GPU}. Run it on a GPU host." >&2
  exit 0
fi
have_trt=0
"$py" -c "import tensorrt" 2>/dev/null && have_trt=1
echo "gpu_check: TensorRT $([ $have_trt = 1 ] && echo present || echo absent: engines skipped)"
mkdir -p "$out" "$out/bench"
ckpt=()
[ -n "${CHECKPOINT:-}" ] && ckpt=(--checkpoint "$CHECKPOINT")
calib=()
[ -n "${CALIB_DATA:-}" ] && calib=(--data "$CALIB_DATA")

"$py" cli.py doctor
"$py" cli.py export "$model" "${ckpt[@]}" --output "$out/$model.onnx"
"$py" cli.py export "$model" "${ckpt[@]}" --precision fp16 --output "$out/$model.fp16.onnx"
"$py" cli.py calibrate "$out/$model.onnx" "${calib[@]}" --output "$out/$model.int8.onnx"
artifacts="$out/$model.onnx,$out/$model.fp16.onnx,$out/$model.int8.onnx"
backends=torch,ort
if [ $have_trt = 1 ]; then
  build=(--max-batch 32 --opt-batch 8 --timing-cache "$out/timing.cache" --layer-info)
  for p in "" .fp16 .int8; do
    "$py" cli.py build-engine "$out/$model$p.onnx" "${build[@]}" --output "$out/$model${p:-.fp32}.plan"
    artifacts="$artifacts,$out/$model${p:-.fp32}.plan"
  done
  backends=torch,ort,trt
fi
"$py" scripts/gpu_check_report.py check "$out" "$model" ${CHECKPOINT:-}
"$py" cli.py bench "$model" "${ckpt[@]}" --backends "$backends" --device cuda --cuda-graphs \
  --artifacts "$artifacts" --batch-sizes 1,8,32 --torch-precisions fp32,fp16 --output "$out/bench" --no-plot \
  || echo "gpu_check: bench failed; the table below has the parity rows only" >&2
cp "$out"/bench/*.json "$out/bench.json" 2>/dev/null || true
"$py" scripts/gpu_check_report.py report "$out"
