#!/usr/bin/env bash
# Regenerate the committed TensorRT API surfaces (tests/data/trt_api/*.json) from the real
# bindings wheels of every TensorRT version the project supports.
#   usage: tools/trt_api/regenerate.sh            (needs pip access to PyPI and gcc)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/tests/data/trt_api"
mkdir -p "$out"
for version in 10.3.0 10.16.1.11 11.4.0.106; do
  env_dir=$(mktemp -d)
  bash "$here/make_env.sh" "$version" "$env_dir" >/dev/null
  (
    source "$env_dir/env.sh"
    python3 "$here/dump_surface.py" > "$out/tensorrt-$version.json.tmp"
  )
  mv "$out/tensorrt-$version.json.tmp" "$out/tensorrt-$version.json"
  rm -rf "$env_dir"
  echo "wrote $out/tensorrt-$version.json"
done
