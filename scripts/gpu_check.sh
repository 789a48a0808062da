#!/usr/bin/env bash
# Thin wrapper kept for old notes: the parity and CUDA-graph checks alone, through the lease
# script (probe: exit 10 without a GPU, 11 when the probe breaks; results in --out / $OUT).
#   bash scripts/gpu_check.sh --out gpu_check_out [--model ran92]
exec python3 "$(dirname "$0")/gpu_lease.py" --steps probe,export,check "$@"
