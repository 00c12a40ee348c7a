// Context: KV memory, and the bridge from JS to the batch scorer (scorer.cpp).
//
// The scorer runs a plan made in TypeScript (src/engine/plan.ts): a list of steps, each either
//   DECODE [a, b)  one llama_decode over tokens a..b-1 (token, position, sequence set, output slot)
//   RM p           drop every cell at position >= p, in all sequences (pop back to a shared prefix)
//   CLEAR          empty the KV memory
//   COPY a b       sequence a's cells into sequence b (the streams layout, src/engine/plan-streams.ts)
// Logits are requested only at the tokens that carry an output slot, and only the requested token
// ids (plus, optionally, the log-sum-exp of the whole row) are copied out.
#include "context.h"

#include <cmath>

#include <cstring>
#include "ggml-backend.h"

#include "lora.h"
#include "model.h"
#include "scorer.h"

namespace tallrec {

namespace {

struct Plan : ScorePlan {
    std::vector<std::shared_ptr<LoraHandle>> adapters;
    std::vector<float> scales;
};

bool AbortCallback(void * data) {
    return static_cast<ContextHandle *>(data)->abort.load();
}

// A CPU threadpool with the given polling level, attached to the context. llama.cpp otherwise
// makes a threadpool per graph whose threads spin (poll 50) between operations: fast on an idle
// machine, but on an oversubscribed one a spinning thread holds a core the thread it waits for
// needs, and decoding slows down tenfold. Reached through the CPU backend's registry, so it works
// with dynamically loaded backends too.
void AttachThreadpool(ContextHandle & h, int32_t threads, int32_t poll) {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) return;
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    using NewFn = ggml_threadpool * (*)(ggml_threadpool_params *);
    using FreeFn = void (*)(ggml_threadpool *);
    auto newTp = reinterpret_cast<NewFn>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
    auto freeTp = reinterpret_cast<FreeFn>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
    if (!newTp || !freeTp) return;
    ggml_threadpool_params p = ggml_threadpool_params_default(threads);
    p.poll = static_cast<uint32_t>(poll);
    ggml_threadpool * tp = newTp(&p);
    if (!tp) return;
    h.threadpool = tp;
    h.freeThreadpool = freeTp;
    llama_attach_threadpool(h.ctx, tp, tp);
}

}  // namespace

Napi::Function Context::Define(Napi::Env env) {
    return DefineClass(env, "Context",
                       {
                           StaticMethod<&Context::Create>("create"),
                           InstanceMethod<&Context::Run>("run"),
                           InstanceMethod<&Context::Generate>("generate"),
                           InstanceMethod<&Context::Embed>("embed"),
                           InstanceMethod<&Context::Abort>("abort"),
                           InstanceMethod<&Context::Info>("info"),
                           InstanceMethod<&Context::Dispose>("dispose"),
                       });
}

Context::Context(const Napi::CallbackInfo & info) : Napi::ObjectWrap<Context>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
        throw InvalidType(info.Env(), "use Context.create(model, options) to create a context");
    handle_ = *info[0].As<Napi::External<std::shared_ptr<ContextHandle>>>().Data();
}

std::shared_ptr<ContextHandle> Context::Handle(Napi::Env env) const {
    if (!handle_) throw CodedError(env, codes::kClosed, "the context was disposed");
    return handle_;
}

std::shared_ptr<ContextHandle> Context::Claim(Napi::Env env) const {
    auto h = Handle(env);
    bool expected = false;
    if (!h->busy.compare_exchange_strong(expected, true))
        throw CodedError(env, codes::kBusy, "the context is busy with another call (calls on one context must not overlap)");
    h->abort.store(false);
    return h;
}

// Context.create(model, { nCtx, nBatch, nUbatch, nSeqMax, threads, threadsBatch, flashAttn,
//                         embeddings, kvUnified, offloadKqv, kvType, poll, adaptThreads }) -> Promise<Context>
Napi::Value Context::Create(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1) throw InvalidType(env, "model is required");
    auto model = Model::FromValue(info[0], "model")->Handle(env);
    Napi::Object o = OptionsArg(info, 1);

    llama_context_params p = llama_context_default_params();
    p.n_ctx = static_cast<uint32_t>(IntOption(o, "nCtx", 4096));
    p.n_batch = static_cast<uint32_t>(IntOption(o, "nBatch", p.n_ctx));
    p.n_ubatch = static_cast<uint32_t>(IntOption(o, "nUbatch", 512));
    p.n_seq_max = static_cast<uint32_t>(IntOption(o, "nSeqMax", 64));
    const int64_t threads = IntOption(o, "threads", 0);
    p.n_threads = threads > 0 ? static_cast<int32_t>(threads) : p.n_threads;
    const int64_t threadsBatch = IntOption(o, "threadsBatch", threads);
    p.n_threads_batch = threadsBatch > 0 ? static_cast<int32_t>(threadsBatch) : p.n_threads;
    const std::string fa = o.Has("flashAttn") && o.Get("flashAttn").IsString() ? o.Get("flashAttn").As<Napi::String>().Utf8Value() : "off";
    if (fa == "off") p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    else if (fa == "on") p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    else if (fa == "auto") p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    else throw InvalidType(env, "flashAttn must be \"off\", \"on\" or \"auto\"");
    p.embeddings = BoolOption(o, "embeddings", false);
    if (p.embeddings) p.pooling_type = LLAMA_POOLING_TYPE_MEAN;
    p.kv_unified = BoolOption(o, "kvUnified", true);
    const std::string kvType = o.Has("kvType") && o.Get("kvType").IsString() ? o.Get("kvType").As<Napi::String>().Utf8Value() : "f16";
    if (kvType == "f32") p.type_k = p.type_v = GGML_TYPE_F32;
    else if (kvType == "f16") p.type_k = p.type_v = GGML_TYPE_F16;
    else throw InvalidType(env, "kvType must be \"f16\" or \"f32\"");
    p.offload_kqv = BoolOption(o, "offloadKqv", true);
    p.no_perf = true;
    const int64_t poll = IntOption(o, "poll", -1);  // -1: llama.cpp's own per-graph threads
    // fewer threads while other processes hold cores (threads.h); needs our own threadpool
    const bool adaptThreads = BoolOption(o, "adaptThreads", false) && poll >= 0;

    if (p.n_ctx < 16) throw InvalidRange(env, "nCtx must be at least 16");
    if (p.n_batch < 1 || p.n_ubatch < 1) throw InvalidRange(env, "nBatch and nUbatch must be positive");
    if (p.n_seq_max < 1 || p.n_seq_max > kMaxSeq) throw InvalidRange(env, "nSeqMax must be in 1.." + std::to_string(kMaxSeq));
    // llama.cpp asserts (aborts) when n_seq_max exceeds the output capacity, which is n_batch
    if (p.n_seq_max > p.n_batch) throw InvalidRange(env, "nSeqMax must not exceed nBatch");

    using Result = std::shared_ptr<ContextHandle>;
    return PromiseWorker<Result>::Start(
        env,
        [=]() -> Result {
            BeginLogCapture();
            llama_context * ctx = llama_init_from_model(model->model, p);
            if (!ctx) throw Failure("failed to create a context for " + model->path);
            auto h = std::make_shared<ContextHandle>();
            h->model = model;
            h->ctx = ctx;
            h->nBatch = llama_n_batch(ctx);
            h->nSeqMax = llama_n_seq_max(ctx);
            llama_set_abort_callback(ctx, AbortCallback, h.get());
            if (poll >= 0) AttachThreadpool(*h, p.n_threads, static_cast<int32_t>(poll));
            h->governor = std::make_unique<ThreadGovernor>(p.n_threads, adaptThreads && h->threadpool != nullptr);
            return h;
        },
        [](Napi::Env env, Result & h) -> Napi::Value {
            auto ext = Napi::External<Result>::New(env, new Result(h), [](Napi::Env, Result * p) { delete p; });
            return Data(env).contextCtor.New({ext});
        });
}

void ReadAdapters(Napi::Env env, const Napi::Object & o, const ModelHandle & model, std::vector<std::shared_ptr<LoraHandle>> & adapters,
                  std::vector<float> & scales) {
    Napi::Value list = o.Get("adapters");
    if (list.IsUndefined() || list.IsNull()) return;
    if (!list.IsArray()) throw InvalidType(env, "adapters must be an array of Lora");
    auto arr = list.As<Napi::Array>();
    std::vector<float> sc;
    if (arr.Length() > 0) sc = CopyFloat32(o.Get("scales"), "scales");
    if (sc.size() != arr.Length()) throw InvalidRange(env, "scales must have one entry per adapter");
    for (uint32_t i = 0; i < arr.Length(); i++) {
        auto lora = Lora::FromValue(arr.Get(i), "adapters[i]")->Handle(env);
        if (lora->model.get() != &model)
            throw CodedError(env, codes::kInvalidInput, "LoRA adapter " + lora->path + " belongs to another model");
        if (!std::isfinite(sc[i])) throw InvalidRange(env, "adapter scale must be finite");
        adapters.push_back(lora);
    }
    scales = sc;
}

void ApplyAdapters(ContextHandle & h, const std::vector<std::shared_ptr<LoraHandle>> & adapters, const std::vector<float> & scales) {
    std::vector<llama_adapter_lora *> raw;
    raw.reserve(adapters.size());
    for (auto & a : adapters) raw.push_back(a->adapter);
    std::vector<float> sc = scales;
    if (llama_set_adapters_lora(h.ctx, raw.empty() ? nullptr : raw.data(), raw.size(), sc.empty() ? nullptr : sc.data()) != 0)
        throw Failure("failed to set the LoRA adapters on the context");
    h.active = adapters;  // keep them alive while set
    h.activeScales = scales;
}

// run(plan) -> Promise<{ values: Float32Array, lse: Float64Array | null, decodeCalls, tokensDecoded }>
Napi::Value Context::Run(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw InvalidType(env, "plan must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    auto h0 = Handle(env);

    auto plan = std::make_shared<Plan>();
    ReadAdapters(env, o, *h0->model, plan->adapters, plan->scales);
    plan->tokens = CopyInt32(o.Get("tokens"), "tokens");
    plan->pos = CopyInt32(o.Get("pos"), "pos");
    plan->out = CopyInt32(o.Get("out"), "out");
    plan->seqOffsets = CopyInt32(o.Get("seqOffsets"), "seqOffsets");
    plan->seqIds = CopyInt32(o.Get("seqIds"), "seqIds");
    plan->steps = CopyInt32(o.Get("steps"), "steps");
    plan->targets = CopyInt32(o.Get("targets"), "targets");
    plan->nOutputs = static_cast<int32_t>(IntOption(o, "nOutputs", 0));
    plan->lse = BoolOption(o, "lse", false);

    // Validate everything here, so that llama.cpp never sees an id or position it would assert on.
    const std::string invalid = ValidatePlan(*plan, llama_vocab_n_tokens(h0->model->vocab), h0->nSeqMax, h0->nBatch);
    if (!invalid.empty()) throw InvalidRange(env, invalid);

    auto h = Claim(env);
    using Result = std::shared_ptr<ScoreResult>;
    return PromiseWorker<Result>::Start(
        env,
        [h, plan]() -> Result {
            BusyGuard busy(h);
            BeginLogCapture();
            ApplyAdapters(*h, plan->adapters, plan->scales);
            return std::make_shared<ScoreResult>(RunPlan(h->ctx, *plan, &h->abort, h->governor.get()));
        },
        [](Napi::Env env, Result & r) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            auto values = Napi::Float32Array::New(env, r->values.size());
            if (!r->values.empty()) std::memcpy(values.Data(), r->values.data(), r->values.size() * sizeof(float));
            o.Set("values", values);
            if (r->lse.empty()) {
                o.Set("lse", env.Null());
            } else {
                auto lse = Napi::Float64Array::New(env, r->lse.size());
                std::memcpy(lse.Data(), r->lse.data(), r->lse.size() * sizeof(double));
                o.Set("lse", lse);
            }
            o.Set("decodeCalls", static_cast<double>(r->decodeCalls));
            o.Set("tokensDecoded", static_cast<double>(r->tokensDecoded));
            return o;
        });
}

// abort(): makes the running call (if any) stop at its next step or inside llama_decode.
Napi::Value Context::Abort(const Napi::CallbackInfo & info) {
    if (handle_ && handle_->busy.load()) handle_->abort.store(true);
    return info.Env().Undefined();
}

Napi::Value Context::Info(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("nCtx", llama_n_ctx(h->ctx));
    o.Set("nBatch", llama_n_batch(h->ctx));
    o.Set("nUbatch", llama_n_ubatch(h->ctx));
    o.Set("nSeqMax", llama_n_seq_max(h->ctx));
    o.Set("nCtxSeq", llama_n_ctx_seq(h->ctx));
    o.Set("busy", h->busy.load());
    // the load estimate is atomic and process-wide (threads.h): safe to read while a call runs
    o.Set("threads", h->governor ? h->governor->Current() : 0);
    o.Set("adaptThreads", h->governor ? h->governor->Adaptive() : false);
    o.Set("otherCores", h->governor ? h->governor->Others() : -1);
    return o;
}

// dispose(): frees the context once no call is running on it.
Napi::Value Context::Dispose(const Napi::CallbackInfo & info) {
    handle_.reset();
    return info.Env().Undefined();
}

}  // namespace tallrec
