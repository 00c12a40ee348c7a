// tallrec-harness: the native scorer without Node. Runs a scoring plan written by
// bench/gpu/dump-plan.mjs (the same plan src/engine/plan.ts gives the addon) through the same code
// (native/src/scorer.cpp) on CPU or CUDA, and reports throughput.
//
//   tallrec-harness --model M.gguf [--lora A.gguf [--scale 1]] --plan plan.bin
//                   [--ngl 99] [--threads N] [--reps 3] [--out values.bin]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ggml-cpu.h"
#include "llama.h"
#include "log.h"
#include "scorer.h"

using tallrec::ScorePlan;

namespace {

struct PlanFile {
    ScorePlan plan;
    int32_t nCtx = 0, nBatch = 0, nUbatch = 0, nSeqMax = 0, nPrompts = 0;
    int64_t promptTokens = 0;
};

template <typename T>
void ReadArray(std::ifstream & f, std::vector<T> & v, int64_t n) {
    v.resize(static_cast<size_t>(n));
    if (n > 0) f.read(reinterpret_cast<char *>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
}

PlanFile ReadPlan(const std::string & path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(path + ": cannot open");
    char magic[8];
    f.read(magic, 8);
    if (!f || std::memcmp(magic, "TRPLAN01", 8) != 0) throw std::runtime_error(path + ": not a tallrec plan file");
    int32_t h[12];
    f.read(reinterpret_cast<char *>(h), sizeof(h));
    PlanFile p;
    const int32_t nTokens = h[0], nSeqIds = h[1], nSteps = h[2], nTargets = h[3];
    p.plan.nOutputs = h[4];
    p.plan.lse = h[5] != 0;
    p.nPrompts = h[6];
    p.nCtx = h[7];
    p.nBatch = h[8];
    p.nUbatch = h[9];
    p.nSeqMax = h[10];
    ReadArray(f, p.plan.tokens, nTokens);
    ReadArray(f, p.plan.pos, nTokens);
    ReadArray(f, p.plan.out, nTokens);
    ReadArray(f, p.plan.seqOffsets, static_cast<int64_t>(nTokens) + 1);
    ReadArray(f, p.plan.seqIds, nSeqIds);
    ReadArray(f, p.plan.steps, nSteps);
    ReadArray(f, p.plan.targets, nTargets);
    int64_t promptTokens = 0;
    f.read(reinterpret_cast<char *>(&promptTokens), sizeof(promptTokens));
    if (!f) throw std::runtime_error(path + ": truncated");
    p.promptTokens = promptTokens;
    return p;
}

const char * Arg(int argc, char ** argv, const char * name, const char * fallback) {
    for (int i = 1; i + 1 < argc; i++)
        if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
    return fallback;
}

}  // namespace

int main(int argc, char ** argv) {
    const char * modelPath = Arg(argc, argv, "--model", nullptr);
    const char * planPath = Arg(argc, argv, "--plan", nullptr);
    if (!modelPath || !planPath) {
        std::fprintf(stderr, "usage: %s --model M.gguf [--lora A.gguf [--scale 1]] --plan plan.bin [--ngl 99] [--threads N] [--reps 3] [--out values.bin]\n", argv[0]);
        return 2;
    }
    const char * loraPath = Arg(argc, argv, "--lora", nullptr);
    const float scale = std::strtof(Arg(argc, argv, "--scale", "1"), nullptr);
    const int ngl = std::atoi(Arg(argc, argv, "--ngl", "99"));
    const int threads = std::atoi(Arg(argc, argv, "--threads", "0"));
    const int reps = std::max(1, std::atoi(Arg(argc, argv, "--reps", "3")));
    const char * outPath = Arg(argc, argv, "--out", nullptr);
    const int poll = std::atoi(Arg(argc, argv, "--poll", "0"));  // -1: llama.cpp's per-graph threads
    const int seqOverride = std::atoi(Arg(argc, argv, "--seq", "0"));
    const int ctxOverride = std::atoi(Arg(argc, argv, "--ctx", "0"));
    try {
        tallrec::InstallLogCallback();
        ggml_backend_load_all();
        llama_backend_init();
        const PlanFile pf = ReadPlan(planPath);
        tallrec::BeginLogCapture();
        llama_model_params mp = llama_model_default_params();
        mp.n_gpu_layers = ngl;
        llama_model * model = llama_model_load_from_file(modelPath, mp);
        if (!model) throw tallrec::Failure(std::string(modelPath) + ": failed to load model");
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = static_cast<uint32_t>(pf.nCtx);
        cp.n_batch = static_cast<uint32_t>(pf.nBatch);
        cp.n_ubatch = static_cast<uint32_t>(pf.nUbatch);
        cp.n_seq_max = static_cast<uint32_t>(seqOverride > 0 ? seqOverride : pf.nSeqMax);
        if (ctxOverride > 0) cp.n_ctx = static_cast<uint32_t>(ctxOverride);
        cp.kv_unified = true;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.no_perf = true;
        if (threads > 0) cp.n_threads = cp.n_threads_batch = threads;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) throw tallrec::Failure("failed to create the context");
        ggml_threadpool * tp = nullptr;
        if (poll >= 0) {  // as the addon does (native/src/context.cpp)
            ggml_threadpool_params tpp = ggml_threadpool_params_default(static_cast<int>(llama_n_threads(ctx)));
            tpp.poll = static_cast<uint32_t>(poll);
            tp = ggml_threadpool_new(&tpp);
            llama_attach_threadpool(ctx, tp, tp);
        }
        llama_adapter_lora * lora = nullptr;
        if (loraPath) {
            lora = llama_adapter_lora_init(model, loraPath);
            if (!lora) throw tallrec::Failure(std::string(loraPath) + ": failed to load the adapter");
            float s = scale;
            if (llama_set_adapters_lora(ctx, &lora, 1, &s) != 0) throw tallrec::Failure("failed to set the adapter");
        }
        const std::string invalid = tallrec::ValidatePlan(pf.plan, llama_vocab_n_tokens(llama_model_get_vocab(model)), llama_n_seq_max(ctx), llama_n_batch(ctx));
        if (!invalid.empty()) throw std::runtime_error(std::string(planPath) + ": " + invalid);

        std::atomic<bool> abort{false};
        tallrec::ScoreResult res;
        double best = 1e300, total = 0;
        for (int r = 0; r < reps + 1; r++) {
            const auto t0 = std::chrono::steady_clock::now();
            res = tallrec::RunPlan(ctx, pf.plan, &abort);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (r == 0) continue;  // warm-up
            best = std::min(best, s);
            total += s;
        }
        const double mean = total / reps;
        std::printf("{\"prompts\": %d, \"promptTokens\": %lld, \"decodedTokens\": %lld, \"decodeCalls\": %lld, \"reps\": %d, \"meanSeconds\": %.6f, \"bestSeconds\": %.6f, \"promptsPerSecond\": %.3f, \"promptTokensPerSecond\": %.1f, \"decodedTokensPerSecond\": %.1f, \"gpuLayers\": %d, \"system\": \"%s\"}\n",
                    pf.nPrompts, static_cast<long long>(pf.promptTokens), static_cast<long long>(res.tokensDecoded), static_cast<long long>(res.decodeCalls), reps, mean, best,
                    pf.nPrompts / mean, pf.promptTokens / mean, res.tokensDecoded / mean, ngl, llama_print_system_info());
        if (outPath) {
            std::ofstream o(outPath, std::ios::binary);
            o.write(reinterpret_cast<const char *>(res.values.data()), static_cast<std::streamsize>(res.values.size() * sizeof(float)));
        }
        if (lora) llama_adapter_lora_free(lora);
        llama_free(ctx);
        if (tp) ggml_threadpool_free(tp);
        llama_model_free(model);
        llama_backend_free();
    } catch (const std::exception & e) {
        std::fprintf(stderr, "tallrec-harness: %s\n", e.what());
        return 1;
    }
    return 0;
}
