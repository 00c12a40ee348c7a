// The batch scorer: runs a plan (made by src/engine/plan.ts) on a llama_context. Free of Node-API, so the
// standalone harness (bench/gpu/harness.cpp) runs exactly this code.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "llama.h"
#include "threads.h"

namespace tallrec {

// Step kinds of a plan (triples: kind, a, b).
enum StepKind : int32_t {
    kDecode = 0,      // one llama_decode over tokens [a, b)
    kRemoveFrom = 1,  // drop every cell at position >= a, in all sequences
    kClear = 2,       // empty the KV memory
    kCopy = 3,        // sequence a's cells into sequence b (across KV streams: the whole stream, at the next decode)
};

struct ScorePlan {
    std::vector<int32_t> tokens, pos, out, seqOffsets, seqIds, steps, targets;
    int32_t nOutputs = 0;
    bool lse = false;  // also compute the log-sum-exp of each output's full logit row
};

struct ScoreResult {
    std::vector<float> values;  // nOutputs x targets.size()
    std::vector<double> lse;    // nOutputs (when asked)
    int64_t decodeCalls = 0;
    int64_t tokensDecoded = 0;
};

// "" when the plan is well formed for a context (ids in range, arrays consistent, decode steps
// within nBatch), else what is wrong. llama.cpp asserts on some malformed input: check first.
std::string ValidatePlan(const ScorePlan & plan, int32_t nVocab, uint32_t nSeqMax, uint32_t nBatch);

// Runs a validated plan; adapters must already be set on ctx. Throws std::runtime_error with
// llama.cpp's explanation on failure, after emptying the KV memory (nothing stale is reused).
// With a governor, each decode runs on the threads it chooses (threads.h).
ScoreResult RunPlan(llama_context * ctx, const ScorePlan & plan, const std::atomic<bool> * abort, ThreadGovernor * governor = nullptr);

}  // namespace tallrec
