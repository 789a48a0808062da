#!/usr/bin/env bash
# The end-to-end check for a real GPU + TensorRT host (CI has neither): build FP32, FP16 and INT8
# engines of a model, verify each against eager PyTorch on the GPU, benchmark them against eager
# PyTorch and ONNX Runtime CUDA, and print one table. Everything lands in $OUT.
#
#   pip install -e ".[gpu]"            # onnxruntime-gpu, tensorrt, cuda-python (+ a CUDA torch)
#   bash scripts/gpu_check.sh          # MODEL=ran92 OUT=gpu_check CALIB_DATA=imgs/ CHECKPOINT=w.pt
#
# Without CALIB_DATA the INT8 engine is calibrated on the built-in sample photos (a smoke test);
# without CHECKPOINT the weights are the seeded random initialisation, so accuracy means little
# but parity and speed do.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${MODEL:-ran92}
out=${OUT:-gpu_check}
batches=${BATCH_SIZES:-1,8,32}
max_batch=${batches##*,}
mkdir -p "$out"
ckpt=()
[ -n "${CHECKPOINT:-}" ] && ckpt=(--checkpoint "$CHECKPOINT")
calib=()
[ -n "${CALIB_DATA:-}" ] && calib=(--calib-data "$CALIB_DATA")
build=(--max-batch "$max_batch" --opt-batch 8 --timing-cache "$out/timing.cache" --layer-info)

python cli.py doctor
python cli.py export "$model" "${ckpt[@]}" --output "$out/$model.onnx"
python cli.py build-engine "$out/$model.onnx" "${build[@]}" --output "$out/$model.fp32.plan"
python cli.py build-engine "$out/$model.onnx" --fp16 "${build[@]}" --output "$out/$model.fp16.plan"
python cli.py build-engine "$out/$model.onnx" --int8 "${calib[@]}" "${build[@]}" --output "$out/$model.int8.plan"

status=0
for precision in fp32 fp16 int8; do
  # Exit code 1 is a parity failure: record it and go on to the benchmark.
  python cli.py verify "$model" "$out/$model.$precision.plan" "${ckpt[@]}" --device cuda \
    ${CALIB_DATA:+--data "$CALIB_DATA"} --output "$out/verify_$precision.json" || status=1
done
python cli.py bench "$model" "${ckpt[@]}" --backends torch,ort,trt --device cuda \
  --artifacts "$out/$model.onnx,$out/$model.fp16.onnx,$out/$model.int8.onnx,$out/$model.fp32.plan,$out/$model.fp16.plan,$out/$model.int8.plan" \
  --batch-sizes "$batches" --torch-precisions fp32,fp16 --output "$out/bench.json"
python scripts/gpu_check_report.py "$out"
exit $status
