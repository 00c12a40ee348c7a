#include "scorer.h"

#include <cmath>

#include "log.h"

namespace tallrec {

namespace {

std::string DecodeError(int32_t rc) {
    switch (rc) {
        case 1: return "llama_decode: no KV cache slot for the batch (context too small for this plan)";
        case 2: return "llama_decode: aborted";
        case -1: return "llama_decode: invalid batch";
        default: return "llama_decode failed with code " + std::to_string(rc);
    }
}

double LogSumExp(const float * row, int32_t n) {
    float mx = row[0];
    for (int32_t v = 1; v < n; v++) mx = row[v] > mx ? row[v] : mx;
    double sum = 0.0;
    for (int32_t v = 0; v < n; v++) sum += std::exp(static_cast<double>(row[v]) - mx);
    return static_cast<double>(mx) + std::log(sum);
}

}  // namespace

std::string ValidatePlan(const ScorePlan & p, int32_t nVocab, uint32_t nSeqMax, uint32_t nBatch) {
    const size_t n = p.tokens.size();
    if (p.pos.size() != n || p.out.size() != n || p.seqOffsets.size() != n + 1)
        return "plan arrays disagree in length (tokens, pos, out, seqOffsets = tokens + 1)";
    if (p.nOutputs < 0) return "nOutputs must be >= 0";
    for (int32_t t : p.targets)
        if (t < 0 || t >= nVocab) return "target token id " + std::to_string(t) + " is outside the vocabulary";
    if (p.seqOffsets[0] != 0 || static_cast<size_t>(p.seqOffsets[n]) != p.seqIds.size())
        return "seqOffsets must start at 0 and end at seqIds.length";
    for (size_t i = 0; i < n; i++) {
        if (p.tokens[i] < 0 || p.tokens[i] >= nVocab) return "token id " + std::to_string(p.tokens[i]) + " is outside the vocabulary";
        if (p.pos[i] < 0) return "negative position";
        if (p.out[i] < -1 || p.out[i] >= p.nOutputs) return "output slot out of range";
        if (p.seqOffsets[i + 1] <= p.seqOffsets[i]) return "every token needs at least one sequence id";
    }
    for (int32_t s : p.seqIds)
        if (s < 0 || static_cast<uint32_t>(s) >= nSeqMax)
            return "sequence id " + std::to_string(s) + " is outside 0.." + std::to_string(nSeqMax - 1);
    if (p.steps.size() % 3 != 0) return "steps must be triples";
    for (size_t i = 0; i < p.steps.size(); i += 3) {
        const int32_t kind = p.steps[i], a = p.steps[i + 1], b = p.steps[i + 2];
        if (kind == kDecode) {
            if (a < 0 || b <= a || static_cast<size_t>(b) > n) return "decode step range out of bounds";
            if (static_cast<uint32_t>(b - a) > nBatch)
                return "decode step of " + std::to_string(b - a) + " tokens exceeds nBatch " + std::to_string(nBatch);
        } else if (kind == kCopy) {
            if (a < 0 || b < 0 || static_cast<uint32_t>(a) >= nSeqMax || static_cast<uint32_t>(b) >= nSeqMax || a == b)
                return "copy step needs two different sequence ids in 0.." + std::to_string(nSeqMax - 1);
        } else if (kind != kRemoveFrom && kind != kClear) {
            return "unknown step kind " + std::to_string(kind);
        }
    }
    return "";
}

ScoreResult RunPlan(llama_context * ctx, const ScorePlan & plan, const std::atomic<bool> * abort, ThreadGovernor * governor) {
    ScoreResult res;
    const size_t nt = plan.targets.size();
    res.values.assign(static_cast<size_t>(plan.nOutputs) * nt, NAN);
    if (plan.lse) res.lse.assign(static_cast<size_t>(plan.nOutputs), NAN);
    llama_memory_t mem = llama_get_memory(ctx);
    const int32_t nVocab = llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
    std::vector<llama_seq_id *> seqPtrs;
    std::vector<int32_t> nSeq;
    std::vector<int8_t> logits;
    try {
        for (size_t s = 0; s < plan.steps.size(); s += 3) {
            if (abort && abort->load()) throw CodedFailure(codes::kAborted, "aborted");
            const int32_t kind = plan.steps[s], a = plan.steps[s + 1], b = plan.steps[s + 2];
            if (kind == kClear) {
                llama_memory_clear(mem, false);
                continue;
            }
            if (kind == kRemoveFrom) {
                llama_memory_seq_rm(mem, -1, a, -1);
                continue;
            }
            if (kind == kCopy) {
                llama_memory_seq_cp(mem, a, b, -1, -1);
                continue;
            }
            // batch -> decode -> logits, as in llama.cpp's examples/batched
            const int32_t len = b - a;
            seqPtrs.resize(len);
            nSeq.resize(len);
            logits.resize(len);
            for (int32_t i = 0; i < len; i++) {
                const int32_t k = a + i;
                seqPtrs[i] = const_cast<llama_seq_id *>(plan.seqIds.data()) + plan.seqOffsets[k];
                nSeq[i] = plan.seqOffsets[k + 1] - plan.seqOffsets[k];
                logits[i] = plan.out[k] >= 0 ? 1 : 0;
            }
            llama_batch batch{};
            batch.n_tokens = len;
            batch.token = const_cast<llama_token *>(plan.tokens.data()) + a;
            batch.pos = const_cast<llama_pos *>(plan.pos.data()) + a;
            batch.n_seq_id = nSeq.data();
            batch.seq_id = seqPtrs.data();
            batch.logits = logits.data();
            PaceThreads(ctx, governor);
            const int32_t rc = llama_decode(ctx, batch);
            if (rc != 0) throw Failure(DecodeError(rc), rc == 2 ? codes::kAborted : codes::kBackend);
            res.decodeCalls++;
            res.tokensDecoded += len;
            for (int32_t i = 0; i < len; i++) {
                const int32_t slot = plan.out[a + i];
                if (slot < 0) continue;
                const float * row = llama_get_logits_ith(ctx, i);
                if (!row) throw Failure("no logits for an output token");
                float * dst = res.values.data() + static_cast<size_t>(slot) * nt;
                for (size_t t = 0; t < nt; t++) dst[t] = row[plan.targets[t]];
                if (plan.lse) res.lse[slot] = LogSumExp(row, nVocab);
            }
        }
    } catch (...) {
        llama_memory_clear(mem, false);
        throw;
    }
    return res;
}

}  // namespace tallrec
