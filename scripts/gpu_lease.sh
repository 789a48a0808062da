#!/usr/bin/env bash
# Thin wrapper kept for old notes: the lease is scripts/gpu_lease.py (see its docstring).
exec python3 "$(dirname "$0")/gpu_lease.py" "$@"
