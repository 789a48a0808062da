#!/usr/bin/env bash
# Make TensorRT's real Python bindings importable on a machine without TensorRT's native libraries
# or a GPU, for reading the API only. The bindings wheels are ordinary PyPI packages; three stub
# shared libraries stand in for libnvinfer, libnvonnxparser and libnvinfer_plugin. Every factory in
# the stubs returns null, so nothing can build or run an engine with this environment.
#
#   usage: tools/trt_api/make_env.sh 11.4.0.106 /tmp/trt-11.4     then: source /tmp/trt-11.4/env.sh
set -euo pipefail
version=${1:?TensorRT version, e.g. 11.4.0.106}
dest=${2:?destination folder}
major=${version%%.*}
minor=$(echo "$version" | cut -d. -f2)
case $major in
  10) wheel=tensorrt-cu12-bindings ;;
  *) wheel=tensorrt-cu13-bindings ;;
esac
libversion=$((major * 10000 + minor * 100))
mkdir -p "$dest/wheel" "$dest/site" "$dest/stub"
python3 -m pip download -q --no-deps -d "$dest/wheel" "$wheel==$version"
(cd "$dest/wheel" && python3 -m zipfile -e ./*.whl .)
pkg=$(ls -d "$dest"/wheel/tensorrt_bindings "$dest"/wheel/tensorrt 2>/dev/null | head -1 || true)
[ -n "$pkg" ] || { echo "no tensorrt package in the $wheel wheel" >&2; exit 1; }
rm -rf "$dest/site/tensorrt" && cp -r "$pkg" "$dest/site/tensorrt"
cat > "$dest/stub/nvinfer.c" <<C
void* createInferBuilder_INTERNAL(void* a, int b) { return 0; }
void* createInferRefitter_INTERNAL(void* a, void* b, int c) { return 0; }
void* createInferRuntime_INTERNAL(void* a, int b) { return 0; }
void* getBuilderPluginRegistry(int a) { return 0; }
void* getPluginRegistry(void) { return 0; }
int getInferLibVersion(void) { return $libversion; }
C
cat > "$dest/stub/parser.c" <<C
void* createNvOnnxParser_INTERNAL(void* a, void* b, int c) { return 0; }
void* createNvOnnxParserRefitter_INTERNAL(void* a, void* b, int c) { return 0; }
int getNvOnnxParserVersion(void) { return $libversion; }
C
echo 'int initLibNvInferPlugins(void* a, const char* b) { return 1; }' > "$dest/stub/plugin.c"
gcc -shared -fPIC -o "$dest/stub/libnvinfer.so.$major" "$dest/stub/nvinfer.c"
gcc -shared -fPIC -o "$dest/stub/libnvonnxparser.so.$major" "$dest/stub/parser.c"
gcc -shared -fPIC -o "$dest/stub/libnvinfer_plugin.so.$major" "$dest/stub/plugin.c"
printf 'export LD_LIBRARY_PATH=%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\nexport PYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH}\n' \
  "$dest/stub" "$dest/site" > "$dest/env.sh"
echo "$dest/env.sh"
