#!/usr/bin/env bash
# One short GPU session's measurements (issue 13), for a lent GPU host that has PyTorch with CUDA
# but no onnxruntime-gpu and no registry: installs the wheels carried in, then runs
# benchmarks/gpu_speed.py (main, independent, CUDA graphs, ORT options; then compile at the
# largest batch only, as each compile of ran92 takes about a minute) into RESULTS, then packs
# RESULTS into $OUT/gpu_lease.tgz (the device tool returns at most 8 files) beside the summary
# JSON. See benchmarks/README.md, "Measuring on a lent GPU", for how the wheels get there.
#
#   bash scripts/gpu_lease.sh            # MODEL=ran92 BATCHES=1,32,128 RESULTS=gpu_lease_out
#
# Prepared on a machine without a GPU and not yet run on one.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
model=${MODEL:-ran92}
batches=${BATCHES:-1,32,128}
device=${DEVICE:-cuda}  # DEVICE=cpu MODEL=ran56_cifar BATCHES=1 smoke-runs it on a CPU
out=${RESULTS:-gpu_lease_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

site=/tmp/deploy-ran-site
if ls /tmp/ortgpu/part* >/dev/null 2>&1; then  # the onnxruntime-gpu wheel, carried in five parts
  whl=$(cat /tmp/ortgpu/name)
  cat /tmp/ortgpu/part* > "/tmp/$whl"
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "/tmp/$whl" || exit 1
fi
if ls .whl/*.whl >/dev/null 2>&1; then  # small wheels the host lacks (onnxslim, ...)
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl || exit 1
fi
[ -d "$site" ] && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
"$py" - <<'PY' 2>&1 | tee "$out/environment.txt"
import onnxruntime as ort, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
print("torch", torch.__version__, "cuda", torch.version.cuda, gpu)
print("onnxruntime", ort.__version__, ort.get_available_providers())
PY

"$py" benchmarks/gpu_speed.py --model "$model" --batch-sizes "$batches" --quick --device "$device" \
  --groups main,independent,cuda-graphs,ort-options -o "$out" 2>&1 | tee "$out/gpu_speed.log"
largest=${batches##*,}
"$py" benchmarks/gpu_speed.py --model "$model" --batch-sizes "$largest" --quick --device "$device" \
  --groups compile -o "$out/compile" 2>&1 | tee "$out/gpu_speed_compile.log"
ls -R "$out"
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/gpu_lease.tgz" -C "$out" .
  cp "$out"/gpu_speed_*.json "$OUT/" 2>/dev/null || true
fi
