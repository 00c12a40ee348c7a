#pragma once

#include <atomic>

#include <memory>

#include "common.h"
#include "threads.h"

namespace tallrec {

struct ContextHandle {
    std::shared_ptr<ModelHandle> model;
    llama_context * ctx = nullptr;
    ggml_threadpool * threadpool = nullptr;  // CPU threads of this context (freed after ctx)
    void (*freeThreadpool)(ggml_threadpool *) = nullptr;
    std::unique_ptr<ThreadGovernor> governor;         // threads per decode (used only by the call holding `busy`)
    std::vector<std::shared_ptr<LoraHandle>> active;  // adapters currently set on ctx
    std::vector<float> activeScales;
    std::atomic<bool> busy{false};
    std::atomic<bool> abort{false};
    uint32_t nBatch = 0;
    uint32_t nSeqMax = 0;
    ~ContextHandle() {
        if (ctx) llama_free(ctx);
        if (threadpool && freeThreadpool) freeThreadpool(threadpool);
    }
};

// Releases a context claimed by Context::Claim when the worker is done with it.
class BusyGuard {
  public:
    explicit BusyGuard(std::shared_ptr<ContextHandle> h) : h_(std::move(h)) {}
    ~BusyGuard() { h_->busy.store(false); }
    BusyGuard(const BusyGuard &) = delete;
    BusyGuard & operator=(const BusyGuard &) = delete;

  private:
    std::shared_ptr<ContextHandle> h_;
};

// An inference context over a model: KV memory, batch scoring, generation.
// JS: Context.create(model, opts) -> Promise<Context>.
class Context : public Napi::ObjectWrap<Context> {
  public:
    static Napi::Function Define(Napi::Env env);
    explicit Context(const Napi::CallbackInfo & info);

    std::shared_ptr<ContextHandle> Handle(Napi::Env env) const;
    // Claims the context for one call (throws if another call is running).
    std::shared_ptr<ContextHandle> Claim(Napi::Env env) const;

  private:
    static Napi::Value Create(const Napi::CallbackInfo & info);
    Napi::Value Run(const Napi::CallbackInfo & info);
    Napi::Value Generate(const Napi::CallbackInfo & info);  // generate.cpp
    Napi::Value Embed(const Napi::CallbackInfo & info);     // generate.cpp
    Napi::Value Abort(const Napi::CallbackInfo & info);
    Napi::Value Info(const Napi::CallbackInfo & info);
    Napi::Value Dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<ContextHandle> handle_;
};

// Sets the adapter set (replacing the previous one) on the worker thread.
void ApplyAdapters(ContextHandle & h, const std::vector<std::shared_ptr<LoraHandle>> & adapters, const std::vector<float> & scales);

// Reads the adapter list of a call ({ adapters: Lora[], scales: Float32Array }) on the JS thread.
void ReadAdapters(Napi::Env env, const Napi::Object & o, const ModelHandle & model, std::vector<std::shared_ptr<LoraHandle>> & adapters,
                  std::vector<float> & scales);

}  // namespace tallrec
