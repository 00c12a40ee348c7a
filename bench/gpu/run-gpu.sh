#!/usr/bin/env bash
# The GPU check, as one script for a machine with an NVIDIA GPU, nvcc, node and (for the peer)
# python3 with torch, transformers and peft. It
#   1. builds llama.cpp from the bundled source with CUDA for sm_90 (H100/H200) and the harness,
#   2. generates a LLaMA-7B-shaped random model (4096 wide, 32 layers, F16, LLaMA vocabulary) and a
#      TALLRec-shaped LoRA (r 8, alpha 16, q and v), in GGUF and in Hugging Face / PEFT layout,
#   3. plans 256 TALLRec movie prompts (tokenized with the tiny model: same vocabulary),
#   4. runs the harness on the GPU and checks its scores against a second code path,
#   5. runs transformers+peft the way TALLRec's evaluate.py does (fp16, batch 32),
# and prints pairs/s for both. Outputs go to $OUT (or bench/results/gpu).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT" models
t() { date +%s; }
T0=$(t)
HARNESS=$(node bench/gpu/build.mjs --cuda --archs "${ARCHS:-90}" | tail -1)
echo "build: $(( $(t) - T0 )) s" | tee "$OUT/timings.txt"
T1=$(t)
node bench/gpu/make-7b.mjs --out models/llama7b-shape.gguf --lora models/llama7b-shape-lora.gguf --hf models/llama7b-shape-hf --peft models/llama7b-shape-peft
echo "models: $(( $(t) - T1 )) s" | tee -a "$OUT/timings.txt"
node bench/gpu/dump-plan.mjs --model models/tiny.gguf --out "$OUT/plan.bin" --prompts 256 --ctx 4096 --sequences 64 --round-tokens 4096 --no-expected
"$HARNESS" --model models/llama7b-shape.gguf --lora models/llama7b-shape-lora.gguf --plan "$OUT/plan.bin" --ngl 99 --reps 3 --out "$OUT/values.bin" | tee "$OUT/harness.json"
"$HARNESS" --model models/llama7b-shape.gguf --lora models/llama7b-shape-lora.gguf --plan "$OUT/plan.bin" --ngl 99 --reps 1 --out "$OUT/values-again.bin" > /dev/null
cmp "$OUT/values.bin" "$OUT/values-again.bin" && echo "harness: reproducible"
if python3 -c "import torch, transformers, peft" 2>/dev/null; then
  python3 bench/gpu/tallrec_eval.py --model models/llama7b-shape-hf --lora models/llama7b-shape-peft \
    --data ../shared/data/tallrec/movie/test.json --prompts 256 --batch 32 --out "$OUT/hf-scores.json" | tee "$OUT/hf.json"
  node bench/gpu/compare-hf.mjs "$OUT/plan.bin" "$OUT/values.bin" "$OUT/hf-scores.json" | tee "$OUT/compare.json"
else
  echo "python3 with torch/transformers/peft not found: peer skipped" | tee "$OUT/hf.json"
fi
echo "total: $(( $(t) - T0 )) s" | tee -a "$OUT/timings.txt"
