// Shared pieces of the addon: the promise-returning worker, llama.cpp log capture, handles.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "llama.h"
#include "log.h"

namespace tallrec {

// llama.cpp's LLAMA_MAX_SEQ (src/llama-cparams.h, not a public header); a larger n_seq_max is
// refused by llama_init_from_model anyway.
constexpr uint32_t kMaxSeq = 256;

// ---- logging (log.h: capture; SetLogger forwards to JS) -------------------------------------

// setLogger(fn | null, minLevel): forwards log lines at or above minLevel to fn(level, text).
Napi::Value SetLogger(const Napi::CallbackInfo & info);

// ---- native handles (shared so that a context keeps its model and adapters alive) ------------

struct ModelHandle {
    llama_model * model = nullptr;
    const llama_vocab * vocab = nullptr;
    std::string path;
    ~ModelHandle() {
        if (model) llama_model_free(model);
    }
};

struct LoraHandle {
    std::shared_ptr<ModelHandle> model;  // an adapter must be freed before its model
    llama_adapter_lora * adapter = nullptr;
    std::string path;
    ~LoraHandle() {
        if (adapter) llama_adapter_lora_free(adapter);
    }
};

// ---- per-environment data --------------------------------------------------------------------

struct AddonData {
    Napi::FunctionReference modelCtor;
    Napi::FunctionReference loraCtor;
    Napi::FunctionReference contextCtor;
};

inline AddonData & Data(Napi::Env env) {
    return *env.GetInstanceData<AddonData>();
}

// ---- a worker that runs on the libuv pool and settles a promise -------------------------------

// Runs work() off the JS thread; convert() turns its result into a JS value on the JS thread.
// Any std::exception thrown by work() rejects the promise with its message.
template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
  public:
    using Work = std::function<Result()>;
    using Convert = std::function<Napi::Value(Napi::Env, Result &)>;

    PromiseWorker(Napi::Env env, Work work, Convert convert)
        : Napi::AsyncWorker(env, "tallrec"),
          deferred_(Napi::Promise::Deferred::New(env)),
          work_(std::move(work)),
          convert_(std::move(convert)) {}

    static Napi::Promise Start(Napi::Env env, Work work, Convert convert) {
        auto * worker = new PromiseWorker(env, std::move(work), std::move(convert));
        Napi::Promise promise = worker->deferred_.Promise();
        worker->Queue();
        return promise;
    }

  protected:
    void Execute() override {
        try {
            result_ = work_();
        } catch (const std::exception & e) {
            SetError(e.what());
        } catch (...) {
            SetError("unknown native error");
        }
    }

    void OnOK() override {
        Napi::Env env = Env();
        Napi::HandleScope scope(env);
        try {
            deferred_.Resolve(convert_(env, result_));
        } catch (const Napi::Error & e) {
            deferred_.Reject(e.Value());
        } catch (const std::exception & e) {
            deferred_.Reject(Napi::Error::New(env, e.what()).Value());
        }
    }

    void OnError(const Napi::Error & e) override {
        deferred_.Reject(e.Value());
    }

  private:
    Napi::Promise::Deferred deferred_;
    Work work_;
    Convert convert_;
    Result result_{};
};

// ---- argument helpers ------------------------------------------------------------------------

inline Napi::Object OptionsArg(const Napi::CallbackInfo & info, size_t i) {
    if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return Napi::Object::New(info.Env());
    if (!info[i].IsObject()) throw Napi::TypeError::New(info.Env(), "options must be an object");
    return info[i].As<Napi::Object>();
}

inline int64_t IntOption(const Napi::Object & o, const char * key, int64_t fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return fallback;
    if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
    return v.As<Napi::Number>().Int64Value();
}

inline bool BoolOption(const Napi::Object & o, const char * key, bool fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return fallback;
    if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a boolean");
    return v.As<Napi::Boolean>().Value();
}

inline std::string StringArg(const Napi::CallbackInfo & info, size_t i, const char * name) {
    if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
    return info[i].As<Napi::String>().Utf8Value();
}

// Copies an Int32Array / Float32Array property into a vector (the worker must not touch JS memory).
inline std::vector<int32_t> CopyInt32(const Napi::Value & v, const char * name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
        throw Napi::TypeError::New(v.Env(), std::string(name) + " must be an Int32Array");
    auto arr = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(arr.Data(), arr.Data() + arr.ElementLength());
}

inline std::vector<float> CopyFloat32(const Napi::Value & v, const char * name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a Float32Array");
    auto arr = v.As<Napi::Float32Array>();
    return std::vector<float>(arr.Data(), arr.Data() + arr.ElementLength());
}

}  // namespace tallrec
