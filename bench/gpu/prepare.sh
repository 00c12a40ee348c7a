#!/usr/bin/env bash
# Packs what the GPU check needs besides the checkout into bench/.cache/gpu-carry/ (git-ignored),
# the one folder to name in the device call's `carry` (see bench/gpu/README.md):
#   node.xz              this machine's Node binary, xz-compressed (for a device without node)
#   bundle.tar.xz        dist/ (the compiled TypeScript), the float64 reference compiled to JS,
#                        and the npm packages the run needs (bench/gpu/pack-modules.mjs)
#   llama-src-*.tar.xz   llama.cpp's source, extracted from node-llama-cpp's bundled git bundle,
#                        less what the addon never builds (docs, models, tools, tests, other backends)
#   manifest.json        the llama.cpp commit, a hash of src/ and test/reference/ (the device run
#                        refuses a stale bundle), sizes
# Run after `npm install` (and after every change to src/ or test/reference/):
#   bash bench/gpu/prepare.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CARRY=bench/.cache/gpu-carry
STAGE=$(mktemp -d /tmp/tallrec-gpu-stage.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$CARRY"
t0=$(date +%s)
source_hash() { find src test/reference -name '*.ts' -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16; }

echo "[prepare] compiling the TypeScript (dist/) and the float64 reference"
npx tsc -p tsconfig.json
npx tsc --target ES2022 --module NodeNext --moduleResolution NodeNext --types node --skipLibCheck \
  --rootDir . --outDir "$STAGE/ref" test/reference/llama64.ts
cp -r dist "$STAGE/dist"
find "$STAGE/dist" "$STAGE/ref" -name '*.map' -delete

echo "[prepare] npm packages"
node bench/gpu/pack-modules.mjs "$STAGE"

COMMIT=$(node --input-type=module -e 'import { bundleInfo } from "./native/llama.mjs"; process.stdout.write(bundleInfo().commit)')
C12=${COMMIT:0:12}
cat > "$STAGE/manifest.json" <<EOF
{ "llamaCppCommit": "$COMMIT", "sourceHash": "$(source_hash)", "node": "$(node --version)", "prepared": "$(date -u +%FT%TZ)" }
EOF
cp "$STAGE/manifest.json" "$CARRY/manifest.json"
tar -C "$STAGE" -cf - dist ref node_modules manifest.json | xz -6 -T2 > "$CARRY/bundle.tar.xz"

SRC_TAR="$CARRY/llama-src-$C12.tar.xz"
if [ ! -f "$SRC_TAR" ]; then
  echo "[prepare] llama.cpp $C12 source (from node-llama-cpp's bundle)"
  SRC=$(node --input-type=module -e 'import { bundleInfo, extractSource } from "./native/llama.mjs"; process.stdout.write(extractSource(bundleInfo()))')
  # what the addon's build configures: the top-level CMake files, include/, src/, vendor/ and ggml/
  # with its CPU and CUDA backends only
  excl=()
  for b in blas cann et hexagon hip metal musa opencl openvino rpc sycl virtgpu vulkan webgpu zdnn zendnn; do
    [ -e "$SRC/ggml/src/ggml-$b" ] && excl+=(":(exclude)ggml/src/ggml-$b")
  done
  git -C "$SRC" archive --format=tar HEAD -- CMakeLists.txt LICENSE licenses cmake include src vendor ggml \
      ':(exclude)vendor/cpp-httplib' "${excl[@]}" \
    | xz -9 -T2 > "$SRC_TAR.tmp"
  mv "$SRC_TAR.tmp" "$SRC_TAR"
fi
find "$CARRY" -name 'llama-src-*.tar.xz' ! -name "llama-src-$C12.tar.xz" -delete

NODE_BIN=$(command -v node)
if [ ! -f "$CARRY/node.xz" ] || [ "$(cat "$CARRY/node.version" 2>/dev/null)" != "$(node --version) $(stat -c %s "$NODE_BIN")" ]; then
  echo "[prepare] compressing $NODE_BIN ($(node --version)); a minute or two"
  xz -9 -T2 -c "$NODE_BIN" > "$CARRY/node.xz.tmp"
  mv "$CARRY/node.xz.tmp" "$CARRY/node.xz"
  echo "$(node --version) $(stat -c %s "$NODE_BIN")" > "$CARRY/node.version"
fi

carry=$(du -sb "$CARRY" | cut -f1)
tree=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "[prepare] done in $(( $(date +%s) - t0 )) s:"
ls -l "$CARRY"
echo "[prepare] carry $(( carry / 1048576 )) MiB + tracked files $(( tree / 1048576 )) MiB + untracked files $(( untracked / 1048576 )) MiB of the device's 64 MiB"
if [ $(( carry + tree + untracked )) -gt $(( 64 * 1048576 )) ]; then echo "[prepare] WARNING: over 64 MiB"; exit 1; fi
