// Text generation (llama.cpp's sampler chain, streamed token by token) and embeddings, on a Context.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "context.h"

namespace tallrec {

namespace {

struct GenerateParams {
    std::vector<int32_t> prompt;
    std::vector<std::shared_ptr<LoraHandle>> adapters;
    std::vector<float> scales;
    int32_t maxTokens = 256;
    float temperature = 0.8f;
    int32_t topK = 40;
    float topP = 0.95f;
    float minP = 0.05f;
    float repeatPenalty = 1.1f;
    int32_t repeatLastN = 64;
    uint32_t seed = 0;
    std::vector<std::string> stop;
};

// Length of the longest suffix of s that is a proper prefix of some stop string: text that must
// be held back until it is clear it does not start a stop string.
size_t HeldBack(const std::string & s, const std::vector<std::string> & stop) {
    size_t best = 0;
    for (const auto & st : stop) {
        for (size_t k = std::min(st.size() - 1, s.size()); k > best; k--) {
            if (s.compare(s.size() - k, k, st, 0, k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

// Number of bytes at the end of s that are an incomplete UTF-8 sequence.
size_t IncompleteUtf8(const std::string & s) {
    size_t n = s.size();
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        const unsigned char c = static_cast<unsigned char>(s[n - back]);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
        size_t need = (c & 0x80) == 0 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

class GenerateWorker : public CodedWorker<Napi::AsyncProgressQueueWorker<char>> {
  public:
    GenerateWorker(Napi::Env env, std::shared_ptr<ContextHandle> h, std::shared_ptr<GenerateParams> p, Napi::Function onText)
        : CodedWorker<Napi::AsyncProgressQueueWorker<char>>(env, "tallrec-generate"), h_(std::move(h)), p_(std::move(p)) {
        if (!onText.IsEmpty()) onText_ = Napi::Persistent(onText);
    }

  protected:
    void Execute(const ExecutionProgress & progress) override {
        BusyGuard busy(h_);
        llama_sampler * smpl = nullptr;
        try {
            BeginLogCapture();
            ApplyAdapters(*h_, p_->adapters, p_->scales);
            llama_context * ctx = h_->ctx;
            const llama_vocab * vocab = h_->model->vocab;
            llama_memory_t mem = llama_get_memory(ctx);
            llama_memory_clear(mem, false);
            const int32_t nCtx = static_cast<int32_t>(llama_n_ctx(ctx));
            const int32_t nPrompt = static_cast<int32_t>(p_->prompt.size());
            if (nPrompt + 1 > nCtx)
                throw CodedFailure(codes::kTooLong,
                                   "the prompt has " + std::to_string(nPrompt) + " tokens but the context holds " + std::to_string(nCtx));

            // the prompt, in n_batch chunks, logits at its last token only
            llama_batch batch = llama_batch_init(static_cast<int32_t>(h_->nBatch), 0, 1);
            struct BatchFree {
                llama_batch & b;
                ~BatchFree() { llama_batch_free(b); }
            } batchFree{batch};
            for (int32_t a = 0; a < nPrompt; a += static_cast<int32_t>(h_->nBatch)) {
                const int32_t b = std::min(nPrompt, a + static_cast<int32_t>(h_->nBatch));
                batch.n_tokens = b - a;
                for (int32_t i = a; i < b; i++) {
                    const int32_t k = i - a;
                    batch.token[k] = p_->prompt[i];
                    batch.pos[k] = i;
                    batch.n_seq_id[k] = 1;
                    batch.seq_id[k][0] = 0;
                    batch.logits[k] = i == nPrompt - 1;
                }
                PaceThreads(ctx, h_->governor.get());
                const int32_t rc = llama_decode(ctx, batch);
                if (rc == 2) throw Failure("aborted", codes::kAborted);
                if (rc != 0) throw Failure("llama_decode failed on the prompt (code " + std::to_string(rc) + ")");
            }

            smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
            if (p_->repeatPenalty != 1.0f && p_->repeatLastN != 0)
                llama_sampler_chain_add(
                    smpl, llama_sampler_init_penalties(llama_vocab_n_tokens(vocab), p_->repeatLastN, p_->repeatPenalty, 0.0f, 0.0f));
            if (p_->temperature <= 0.0f) {
                llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
            } else {
                if (p_->topK > 0) llama_sampler_chain_add(smpl, llama_sampler_init_top_k(p_->topK));
                if (p_->topP < 1.0f) llama_sampler_chain_add(smpl, llama_sampler_init_top_p(p_->topP, 1));
                if (p_->minP > 0.0f) llama_sampler_chain_add(smpl, llama_sampler_init_min_p(p_->minP, 1));
                llama_sampler_chain_add(smpl, llama_sampler_init_temp(p_->temperature));
                llama_sampler_chain_add(smpl, llama_sampler_init_dist(p_->seed));
            }
            for (int32_t t : p_->prompt) llama_sampler_accept(smpl, t);

            std::string text;  // everything generated so far (stop strings cut off)
            size_t sent = 0;   // bytes of text already streamed
            stopReason_ = "length";
            for (int32_t n = 0; n < p_->maxTokens; n++) {
                if (h_->abort.load()) {
                    stopReason_ = "abort";
                    break;
                }
                const llama_token tok = llama_sampler_sample(smpl, ctx, -1);
                if (llama_vocab_is_eog(vocab, tok)) {
                    stopReason_ = "eos";
                    break;
                }
                tokens_.push_back(tok);
                char buf[256];
                const int32_t len = llama_token_to_piece(vocab, tok, buf, sizeof(buf), 0, false);
                if (len > 0) text.append(buf, static_cast<size_t>(len));
                bool stopped = false;
                // a stop string can only start in the text not streamed yet (see HeldBack)
                for (const auto & st : p_->stop) {
                    const size_t at = text.find(st, sent);
                    if (at != std::string::npos) {
                        text.resize(at);
                        stopped = true;
                    }
                }
                if (stopped) {
                    stopReason_ = "stop";
                    break;
                }
                const size_t safe = text.size() - std::max(HeldBack(text, p_->stop), IncompleteUtf8(text));
                if (safe > sent) {
                    progress.Send(text.data() + sent, safe - sent);
                    sent = safe;
                }
                if (static_cast<int32_t>(nPrompt + tokens_.size()) >= nCtx) {
                    stopReason_ = "context";
                    break;
                }
                batch.n_tokens = 1;
                batch.token[0] = tok;
                batch.pos[0] = nPrompt + static_cast<int32_t>(tokens_.size()) - 1;
                batch.n_seq_id[0] = 1;
                batch.seq_id[0][0] = 0;
                batch.logits[0] = 1;
                PaceThreads(ctx, h_->governor.get());
                const int32_t rc = llama_decode(ctx, batch);
                if (rc == 2) {
                    stopReason_ = "abort";
                    break;
                }
                if (rc != 0) throw Failure("llama_decode failed while generating (code " + std::to_string(rc) + ")");
            }
            if (text.size() > sent) progress.Send(text.data() + sent, text.size() - sent);
            text_ = text;
            llama_memory_clear(mem, false);
        } catch (const std::exception & e) {
            llama_memory_clear(llama_get_memory(h_->ctx), false);
            Fail(e);
        } catch (...) {
            llama_memory_clear(llama_get_memory(h_->ctx), false);
            Fail(codes::kInternal, "unknown native error");
        }
        if (smpl) llama_sampler_free(smpl);
    }

    void OnProgress(const char * data, size_t count) override {
        if (onText_.IsEmpty() || data == nullptr) return;
        Napi::Env env = Env();
        Napi::HandleScope scope(env);
        try {
            onText_.Call({Napi::String::New(env, data, count)});
        } catch (const Napi::Error &) {
            // an exception in the JS callback stops the generation; the promise reports it
            h_->abort.store(true);
        }
    }

    void OnOK() override {
        Napi::Env env = Env();
        Napi::HandleScope scope(env);
        Napi::Object o = Napi::Object::New(env);
        o.Set("text", Napi::String::New(env, text_));
        auto toks = Napi::Int32Array::New(env, tokens_.size());
        if (!tokens_.empty()) std::memcpy(toks.Data(), tokens_.data(), tokens_.size() * sizeof(int32_t));
        o.Set("tokens", toks);
        o.Set("stopReason", stopReason_);
        o.Set("promptTokens", static_cast<double>(p_->prompt.size()));
        Resolve(o);
    }

  private:
    std::shared_ptr<ContextHandle> h_;
    std::shared_ptr<GenerateParams> p_;
    Napi::FunctionReference onText_;
    std::string text_;
    std::vector<int32_t> tokens_;
    std::string stopReason_;
};

float FloatOption(const Napi::Object & o, const char * key, float fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return fallback;
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
        throw InvalidType(o.Env(), std::string(key) + " must be a finite number");
    return v.As<Napi::Number>().FloatValue();
}

}  // namespace

// generate({ tokens, maxTokens, temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed,
//            stop, adapters, scales }, onText?) -> Promise<{ text, tokens, stopReason, promptTokens }>
// onText(piece) receives the text as it is generated (whole UTF-8 characters; never part of a stop
// string). stopReason: "eos", "stop", "length", "context" or "abort".
Napi::Value Context::Generate(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw InvalidType(env, "options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    auto h0 = Handle(env);
    auto p = std::make_shared<GenerateParams>();
    ReadAdapters(env, o, *h0->model, p->adapters, p->scales);
    p->prompt = CopyInt32(o.Get("tokens"), "tokens");
    if (p->prompt.empty()) throw InvalidRange(env, "the prompt is empty", codes::kEmpty);
    const int32_t nVocab = llama_vocab_n_tokens(h0->model->vocab);
    for (int32_t t : p->prompt)
        if (t < 0 || t >= nVocab) throw InvalidRange(env, "token id " + std::to_string(t) + " is outside the vocabulary");
    p->maxTokens = static_cast<int32_t>(IntOption(o, "maxTokens", 256));
    if (p->maxTokens < 0) throw InvalidRange(env, "maxTokens must be >= 0");
    p->temperature = FloatOption(o, "temperature", 0.8f);
    p->topK = static_cast<int32_t>(IntOption(o, "topK", 40));
    p->topP = FloatOption(o, "topP", 0.95f);
    p->minP = FloatOption(o, "minP", 0.05f);
    p->repeatPenalty = FloatOption(o, "repeatPenalty", 1.1f);
    p->repeatLastN = static_cast<int32_t>(IntOption(o, "repeatLastN", 64));
    p->seed = static_cast<uint32_t>(IntOption(o, "seed", 0));
    Napi::Value stop = o.Get("stop");
    if (!stop.IsUndefined() && !stop.IsNull()) {
        if (!stop.IsArray()) throw InvalidType(env, "stop must be an array of strings");
        auto arr = stop.As<Napi::Array>();
        for (uint32_t i = 0; i < arr.Length(); i++) {
            if (!arr.Get(i).IsString()) throw InvalidType(env, "stop must be an array of strings");
            std::string s = arr.Get(i).As<Napi::String>().Utf8Value();
            if (!s.empty()) p->stop.push_back(s);
        }
    }
    Napi::Function onText;
    if (info.Length() > 1 && info[1].IsFunction()) onText = info[1].As<Napi::Function>();
    auto h = Claim(env);
    auto * w = new GenerateWorker(env, h, p, onText);
    Napi::Promise promise = w->Promise();
    w->Queue();
    return promise;
}

// embed({ texts: Int32Array[] }) -> Promise<Float32Array> (n x nEmbd, mean-pooled last hidden
// states). The context must have been created with { embeddings: true }.
Napi::Value Context::Embed(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) throw InvalidType(env, "embed takes an array of Int32Array token lists");
    auto h0 = Handle(env);
    if (llama_pooling_type(h0->ctx) == LLAMA_POOLING_TYPE_NONE)
        throw CodedError(env, codes::kInvalidInput, "this context was not created for embeddings");
    auto arr = info[0].As<Napi::Array>();
    auto texts = std::make_shared<std::vector<std::vector<int32_t>>>();
    const int32_t nVocab = llama_vocab_n_tokens(h0->model->vocab);
    for (uint32_t i = 0; i < arr.Length(); i++) {
        texts->push_back(CopyInt32(arr.Get(i), "texts[i]"));
        const auto & t = texts->back();
        if (t.empty()) throw InvalidRange(env, "texts[" + std::to_string(i) + "] is empty", codes::kEmpty);
        if (t.size() > h0->nBatch) throw InvalidRange(env, "texts[" + std::to_string(i) + "] is longer than nBatch");
        for (int32_t tok : t)
            if (tok < 0 || tok >= nVocab) throw InvalidRange(env, "token id outside the vocabulary");
    }
    auto h = Claim(env);
    using Result = std::shared_ptr<std::vector<float>>;
    return PromiseWorker<Result>::Start(
        env,
        [h, texts]() -> Result {
            BusyGuard busy(h);
            BeginLogCapture();
            ApplyAdapters(*h, {}, {});
            llama_context * ctx = h->ctx;
            llama_memory_t mem = llama_get_memory(ctx);
            const int32_t nEmbd = llama_model_n_embd(h->model->model);
            auto out = std::make_shared<std::vector<float>>(texts->size() * static_cast<size_t>(nEmbd));
            const int32_t nSeq = static_cast<int32_t>(h->nSeqMax);
            const int32_t nCtx = static_cast<int32_t>(llama_n_ctx(ctx));
            llama_batch batch = llama_batch_init(static_cast<int32_t>(h->nBatch), 0, 1);
            struct BatchFree {
                llama_batch & b;
                ~BatchFree() { llama_batch_free(b); }
            } batchFree{batch};
            size_t i = 0;
            while (i < texts->size()) {
                llama_memory_clear(mem, false);
                // as many texts as fit one decode (tokens, sequences, cells)
                size_t j = i;
                int32_t used = 0;
                batch.n_tokens = 0;
                while (j < texts->size() && static_cast<int32_t>(j - i) < nSeq &&
                       used + static_cast<int32_t>((*texts)[j].size()) <= std::min(static_cast<int32_t>(h->nBatch), nCtx)) {
                    const auto & t = (*texts)[j];
                    for (size_t k = 0; k < t.size(); k++) {
                        const int32_t n = batch.n_tokens++;
                        batch.token[n] = t[k];
                        batch.pos[n] = static_cast<int32_t>(k);
                        batch.n_seq_id[n] = 1;
                        batch.seq_id[n][0] = static_cast<int32_t>(j - i);
                        batch.logits[n] = 1;
                    }
                    used += static_cast<int32_t>(t.size());
                    j++;
                }
                if (j == i) throw CodedFailure(codes::kTooLong, "a text does not fit the context");
                PaceThreads(ctx, h->governor.get());
                const int32_t rc = llama_decode(ctx, batch);
                if (rc != 0) throw Failure("llama_decode failed while embedding (code " + std::to_string(rc) + ")");
                for (size_t s = i; s < j; s++) {
                    const float * e = llama_get_embeddings_seq(ctx, static_cast<int32_t>(s - i));
                    if (!e) throw Failure("no embedding for a sequence");
                    std::memcpy(out->data() + s * static_cast<size_t>(nEmbd), e, sizeof(float) * static_cast<size_t>(nEmbd));
                }
                i = j;
            }
            llama_memory_clear(mem, false);
            return out;
        },
        [](Napi::Env env, Result & r) -> Napi::Value {
            auto a = Napi::Float32Array::New(env, r->size());
            if (!r->empty()) std::memcpy(a.Data(), r->data(), r->size() * sizeof(float));
            return a;
        });
}

}  // namespace tallrec
