#!/usr/bin/env bash
# The GPU check, as one script for one device call (see bench/gpu/README.md):
#   1. setup: node (unpacked from the carried node.xz when the machine has none), the carried
#      bundle (dist/, npm packages, the float64 reference in JS) and llama.cpp's source;
#   2. in parallel: llama.cpp built from that source for CUDA (sm_90, Ninja, all cores) and for
#      the CPU into native/.cache (bench/gpu/prebuild.mjs), then the addon's CPU variant; the
#      check models, the big model (LLaMA-7B's shape, written by torch on the GPU) and the
#      float64 reference;
#   3. the addon with CUDA, built the way users build it (node native/build.mjs, TALLREC_CUDA=1);
#   4. correctness through engine.score on CUDA (bench/gpu/correctness.mjs);
#   5. throughput through engine.score (throughput.mjs --part headline), the PyTorch peers on the
#      same model and token ids (peers.py), then the option sweep (throughput.mjs --part sweep);
#   6. bench/gpu/report.mjs: $OUT/results.json (everything) and a summary.
# Every stage is timed; its output goes to $OUT/run.log with a [stage] prefix.
#
#   bash bench/gpu/run-gpu.sh          on the device (an H200: CUDA, sm_90, LLaMA-7B's shape)
#   bash bench/gpu/run-gpu.sh --cpu    the rehearsal: no nvcc, the CPU build, small models
#
# Environment: OUT (default bench/results/gpu-<mode>), TALLREC_GPU_WORK (models and stage files,
# default bench/.cache/gpu-work-<mode>), TALLREC_GPU_BUDGET (seconds for the whole run: default
# 540 on the device, none for --cpu; late stages shorten or skip themselves to fit),
# TALLREC_CUDA_ARCHS (default 90), TALLREC_JOBS (default: every core), TALLREC_THREADS (llama.cpp
# threads; --cpu defaults to 1), TALLREC_GPU_CARRY (default bench/.cache/gpu-carry).
set -uo pipefail
MODE=gpu
for arg in "$@"; do
  case $arg in
    --cpu) MODE=cpu ;;
    *) echo "usage: bash bench/gpu/run-gpu.sh [--cpu]" >&2; exit 2 ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
T0=$EPOCHREALTIME
OUT=${OUT:-$ROOT/bench/results/gpu-$MODE}
WORK=${TALLREC_GPU_WORK:-$ROOT/bench/.cache/gpu-work-$MODE}
CARRY=${TALLREC_GPU_CARRY:-$ROOT/bench/.cache/gpu-carry}
mkdir -p "$OUT" "$WORK"
rm -f "$OUT/stages.jsonl" "$OUT/results.json" "$WORK"/*.out "$WORK"/correctness.json "$WORK"/throughput-*.json "$WORK"/peers.json
exec > >(tee -a "$OUT/run.log") 2>&1
if [ "$MODE" = gpu ]; then
  BUDGET=${TALLREC_GPU_BUDGET:-540}
  BACKEND=cuda
else
  BUDGET=${TALLREC_GPU_BUDGET:-0}
  BACKEND=cpu
  export TALLREC_THREADS=${TALLREC_THREADS:-1}
fi
ARCHS=${TALLREC_CUDA_ARCHS:-90}
# the toolkit's runtime libraries (libcudart, libcublas) for the addon's CUDA variant, wherever nvcc
# lives (its RPATH should find them already); given to the node stages only, not to PyTorch
CUDA_LD=
if [ "$MODE" = gpu ]; then
  for d in /usr/local/cuda $(command -v nvcc >/dev/null && dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")"); do
    for l in "$d/lib64" "$d/targets/x86_64-linux/lib"; do [ -d "$l" ] && CUDA_LD="$l${CUDA_LD:+:$CUDA_LD}"; done
  done
fi
cuda_libs() { if [ -n "$CUDA_LD" ]; then LD_LIBRARY_PATH="$CUDA_LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; else "$@"; fi; }
export TALLREC_JOBS=${TALLREC_JOBS:-$(nproc)}
# late stages get a deadline (epoch seconds): what is left when they start, less the report's margin
DEADLINE=0
[ "$BUDGET" -gt 0 ] && DEADLINE=$(awk -v t="$T0" -v b="$BUDGET" 'BEGIN { printf "%d", t + b - 12 }')
echo "GPU check, mode $MODE, $(date -u +%FT%TZ), budget ${BUDGET}s, out $OUT, work $WORK"

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
jstr() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
record() { # record NAME START STATUS [NOTE]
  printf '{"stage": "%s", "status": %s, "seconds": %s, "startedAt": %s, "note": %s}\n' "$1" "$(jstr "$3")" "$(since "$2")" \
    "$(awk -v a="$2" -v t="$T0" 'BEGIN { printf "%.1f", a - t }')" "$(jstr "${4:-}")" >> "$OUT/stages.jsonl"
  echo "== $1: $3 in $(since "$2") s${4:+ ($4)}"
}
skip() { record "$1" "$EPOCHREALTIME" skipped "$2"; }
stage() { # stage NAME CMD...: runs CMD (output prefixed, also kept in $WORK/NAME.out), records it
  local name=$1 s=$EPOCHREALTIME rc
  shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$WORK/$name.out" | sed -u "s/^/[$name] /"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then record "$name" "$s" ok; else record "$name" "$s" "failed (exit $rc)"; fi
  return "$rc"
}
left() { [ "$DEADLINE" = 0 ] && echo 100000 || awk -v d="$DEADLINE" -v n="$EPOCHREALTIME" 'BEGIN { printf "%d", d - n }'; }
finish() {
  if command -v node >/dev/null && [ -f dist/index.js ]; then
    node bench/gpu/report.mjs --mode "$MODE" --work "$WORK" --out "$OUT" --started "$T0" 2>&1 | sed -u "s/^/[report] /"
  fi
  echo "GPU check finished in $(since "$T0") s (exit $1)"
  exit "$1"
}
source_hash() { find src test/reference -name '*.ts' -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16; }

# ---- 1. setup ------------------------------------------------------------------------------
setup() {
  local need=0
  if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0] >= 20' 2>/dev/null)" != true ]; then
    # (setup runs in a pipeline's subshell: the PATH change below is made again after it)
    [ -f "$CARRY/node.xz" ] || { echo "no node >= 20 here and no $CARRY/node.xz (bash bench/gpu/prepare.sh makes it)"; return 1; }
    mkdir -p "$WORK/bin"
    if command -v xz >/dev/null; then xz -dc "$CARRY/node.xz" > "$WORK/bin/node"
    else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$CARRY/node.xz" "$WORK/bin/node"; fi
    chmod +x "$WORK/bin/node"
    export PATH="$WORK/bin:$PATH"
    echo "node: unpacked the carried binary, $(node --version)"
  else
    echo "node: $(command -v node) $(node --version)"
  fi
  [ -f dist/index.js ] && [ -d node_modules/cmake-js ] || need=1
  if [ -f "$CARRY/bundle.tar.xz" ]; then
    local tmp="$WORK/bundle"
    rm -rf "$tmp" && mkdir -p "$tmp"
    tar -C "$tmp" -xJf "$CARRY/bundle.tar.xz" || return 1
    local want have
    want=$(node -p "require('$tmp/manifest.json').sourceHash")
    have=$(source_hash)
    if [ "$want" != "$have" ]; then
      echo "the carried bundle was built from other sources (src/ + test/reference/ hash $want, here $have): run bash bench/gpu/prepare.sh again"
      [ "$need" = 1 ] && return 1
      echo "(dist/ and node_modules/ are present here: using them; the reference is compiled below)"
      rm -rf "$tmp/ref"
    fi
    if [ "$need" = 1 ]; then
      rm -rf dist && mv "$tmp/dist" dist
      if [ -d node_modules ]; then cp -rn "$tmp/node_modules/." node_modules/; else mv "$tmp/node_modules" node_modules; fi
      echo "dist/ and node_modules/ from the carried bundle ($(du -sh node_modules | cut -f1) of packages)"
    fi
    [ -d "$tmp/ref" ] && rm -rf "$WORK/ref" && mv "$tmp/ref" "$WORK/ref"
  elif [ "$need" = 1 ]; then
    echo "dist/ or node_modules/ is missing and there is no $CARRY/bundle.tar.xz: run npm install, or bash bench/gpu/prepare.sh and carry its folder"
    return 1
  fi
  if [ ! -f "$WORK/ref/test/reference/llama64.js" ]; then
    echo "compiling the float64 reference (test/reference/llama64.ts)"
    npx tsc --target ES2022 --module NodeNext --moduleResolution NodeNext --types node --skipLibCheck --rootDir . --outDir "$WORK/ref" test/reference/llama64.ts || return 1
  fi
  local commit c12
  commit=$(node --input-type=module -e 'import { bundleInfo } from "./native/llama.mjs"; process.stdout.write(bundleInfo().commit)') || return 1
  c12=${commit:0:12}
  if [ ! -f "native/.cache/src-$c12/.tallrec-ok" ] && [ -f "$CARRY/llama-src-$c12.tar.xz" ]; then
    rm -rf "native/.cache/src-$c12.tmp" && mkdir -p "native/.cache/src-$c12.tmp"
    tar -C "native/.cache/src-$c12.tmp" -xJf "$CARRY/llama-src-$c12.tar.xz" || return 1
    echo "$commit" > "native/.cache/src-$c12.tmp/.tallrec-ok"
    mv "native/.cache/src-$c12.tmp" "native/.cache/src-$c12"
    echo "llama.cpp $c12: source from the carried tarball"
  fi
  # what this machine is
  {
    echo "node $(node --version); $(nproc) cores; $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory; $(uname -srm)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.max.sm --format=csv,noheader
    command -v nvcc >/dev/null && nvcc --version | tail -2 | head -1
    command -v ninja >/dev/null && echo "ninja $(ninja --version)"; cmake --version | head -1
    python3 -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__, "cuda", torch.cuda.is_available())' 2>/dev/null || echo "python: torch/transformers/peft not all importable"
  } | tee "$WORK/env.txt"
}
stage setup setup || finish 1
node_ok() { command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0] >= 20' 2>/dev/null)" = true ]; }
if ! node_ok && [ -x "$WORK/bin/node" ]; then export PATH="$WORK/bin:$PATH"; fi

# ---- 2. llama.cpp builds, the CPU addon, models and the reference, in parallel -------------------
# The builds run at nice 10, so the model generation and the reference (nice 0) finish first.
if [ "$MODE" = gpu ]; then
  stage build-llama-cuda nice -n 10 node bench/gpu/prebuild.mjs --cuda --archs "$ARCHS" & cuda_pid=$!
fi
cpu_job() {
  stage build-llama-cpu nice -n 10 node bench/gpu/prebuild.mjs || return 1
  # the addon's CPU variant, the way users build it, while CUDA still compiles (--cpu: exactly
  # npm install's build, which also links the prebuilt-CUDA variant where that package is installed)
  if [ "$MODE" = gpu ]; then stage build-addon-cpu nice -n 10 env TALLREC_CUDA=0 node native/build.mjs
  else stage build-addon-cpu nice -n 10 node native/build.mjs; fi
}
cpu_job & cpu_pid=$!
models_job() {
  stage models node bench/gpu/models.mjs --dir "$WORK" --mode "$MODE" || return 1
  stage big-model python3 bench/gpu/make_llama.py --spec "$WORK/big-spec.json" --vocab-from "$WORK/check-f32.gguf" --out "$WORK/big.gguf" &
  local big=$!
  local rc=0
  if [ -f "$WORK/reference.json" ] && [ "$WORK/reference.json" -nt "$WORK/check-f32.gguf" ] && [ "$WORK/reference.json" -nt bench/gpu/check-prompts.json ] \
     && [ "$WORK/reference.json" -nt "$WORK/ref/test/reference/llama64.js" ]; then
    skip reference "cached: $WORK/reference.json is newer than its inputs (a second call on a warm machine)"
  else
    stage reference node bench/gpu/reference.mjs --dir "$WORK" --ref "$WORK/ref/test/reference/llama64.js" --out "$WORK/reference.json"
    rc=$?
  fi
  wait $big || return 1
  return $rc
}
models_job & models_pid=$!
wait $cpu_pid || { wait; finish 1; }

# ---- 3. the addon with CUDA, as users build it ----------------------------------------------------
if [ "$MODE" = gpu ]; then
  wait $cuda_pid || { wait $models_pid; finish 1; }
  stage build-addon env TALLREC_CUDA=1 TALLREC_CUDA_ARCHS="$ARCHS" node native/build.mjs || { wait $models_pid; finish 1; }
  node -e 'const v = require("./build/variants.json").variants; if (!v.some((x) => x.name === "cuda")) { console.error("no cuda variant built"); process.exit(1); }' || { wait $models_pid; finish 1; }
  if [ -d node_modules/@node-llama-cpp/linux-x64-cuda ]; then
    stage prebuilt-cuda cuda_libs env TALLREC_VARIANT=cuda-prebuilt node -e 'import("./dist/index.js").then(async ({ Engine }) => { const e = await Engine.load({ model: process.argv[1], gpu: "cuda" }); console.log(JSON.stringify(e.info.variant), (await e.score([{ instruction: "Q", input: "A" }]))[0].pYes); await e.close(); })' "$WORK/check-f16.gguf"
  else
    skip prebuilt-cuda "node-llama-cpp's prebuilt CUDA libraries are not carried: libggml-cuda.so alone is 159 MB (128 MB compressed), over the device's 64 MiB carry limit; build/variants.json lists only the from-source cuda variant"
  fi
else
  skip prebuilt-cuda "--cpu: no GPU"
fi
wait $models_pid || finish 1

# ---- 4. correctness on the backend --------------------------------------------------------------
stage correctness cuda_libs node bench/gpu/correctness.mjs --dir "$WORK" --reference "$WORK/reference.json" --backend "$BACKEND" --mode "$MODE" --out "$WORK/correctness.json"

# ---- 5. throughput, peers, sweep ------------------------------------------------------------------
common=(--model "$WORK/big.gguf" --lora "$WORK/big-lora.gguf" --prompts "$WORK/prompts.json" --backend "$BACKEND" --mode "$MODE")
stage throughput-headline cuda_libs node bench/gpu/throughput.mjs --part headline "${common[@]}" --out "$WORK/throughput-headline.json" \
  --tokens-out "$WORK/tokens.json" --scores-out "$WORK/tallrec-scores.json" --deadline "$DEADLINE"
# the peers may use all but 60 s of what is left: the sweep comes last
if [ "$DEADLINE" = 0 ]; then peer_deadline=0; else peer_deadline=$(( DEADLINE - 60 )); fi
if [ "$(left)" -gt 90 ]; then
  stage peers python3 bench/gpu/peers.py --selftest "$WORK" --gguf "$WORK/big.gguf" --lora "$WORK/big-lora.gguf" --tokens "$WORK/tokens.json" \
    --tallrec "$WORK/tallrec-scores.json" --out "$WORK/peers.json" --device "$BACKEND" --deadline "$peer_deadline"
else
  skip peers "out of time ($(left) s left)"
fi
if [ "$(left)" -gt 30 ]; then
  stage throughput-sweep cuda_libs node bench/gpu/throughput.mjs --part sweep "${common[@]}" --tokens "$WORK/tokens.json" --out "$WORK/throughput-sweep.json" --deadline "$DEADLINE"
else
  skip throughput-sweep "out of time ($(left) s left)"
fi
finish 0
