// Shared pieces of the addon: coded errors, the promise-returning worker, llama.cpp log capture,
// handles.
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

// ---- errors: every error the addon throws or rejects with has a `code` (codes in log.h) -------

// Sets `code` on a JS error (thrown with `throw`; Node-API then throws it into JS).
template <typename E>
inline E WithCode(E err, const char * code) {
    err.Value().Set("code", code);
    return err;
}

// An Error with a code.
inline Napi::Error CodedError(Napi::Env env, const char * code, const std::string & message) {
    return WithCode(Napi::Error::New(env, message), code);
}

// A TypeError / RangeError for a bad argument (code "invalid_input", or e.g. "empty").
inline Napi::TypeError InvalidType(Napi::Env env, const std::string & message) {
    return WithCode(Napi::TypeError::New(env, message), codes::kInvalidInput);
}

inline Napi::RangeError InvalidRange(Napi::Env env, const std::string & message, const char * code = codes::kInvalidInput) {
    return WithCode(Napi::RangeError::New(env, message), code);
}

// An Error for a C++ exception, with its code (CodeOf).
inline Napi::Error ErrorFrom(Napi::Env env, const std::exception & e) {
    return CodedError(env, CodeOf(e), e.what());
}

// ---- workers that run on the libuv pool and settle a promise ----------------------------------

// Base of the promise-settling workers (Base: Napi::AsyncWorker or AsyncProgressQueueWorker<T>):
// Execute() reports a failure with Fail(exception) and the promise rejects with an Error whose
// `code` is the exception's (a CodedFailure's code, "internal" for anything else).
template <typename Base>
class CodedWorker : public Base {
  public:
    CodedWorker(Napi::Env env, const char * resourceName) : Base(env, resourceName), deferred_(Napi::Promise::Deferred::New(env)) {}

    Napi::Promise Promise() const { return deferred_.Promise(); }

  protected:
    // On the worker thread: the promise rejects with e's message and code.
    void Fail(const std::exception & e) { Fail(CodeOf(e), e.what()); }
    void Fail(const char * code, const std::string & message) {
        code_ = code;
        Base::SetError(message);
    }

    void Resolve(Napi::Value v) { deferred_.Resolve(v); }

    // On the JS thread: rejects with err, given `code` unless it has one.
    void Reject(Napi::Value err, const char * code = codes::kInternal) {
        if (err.IsObject() && !err.As<Napi::Object>().Has("code")) err.As<Napi::Object>().Set("code", code);
        deferred_.Reject(err);
    }

    void OnError(const Napi::Error & e) override {
        Napi::HandleScope scope(this->Env());
        Reject(e.Value(), code_);
    }

  private:
    Napi::Promise::Deferred deferred_;
    const char * code_ = codes::kInternal;
};

// Runs work() off the JS thread; convert() turns its result into a JS value on the JS thread.
// An exception thrown by work() rejects the promise with its message and code (throw
// Failure(...) / CodedFailure for a code other than "internal").
template <typename Result>
class PromiseWorker : public CodedWorker<Napi::AsyncWorker> {
  public:
    using Work = std::function<Result()>;
    using Convert = std::function<Napi::Value(Napi::Env, Result &)>;

    PromiseWorker(Napi::Env env, Work work, Convert convert)
        : CodedWorker<Napi::AsyncWorker>(env, "tallrec"), work_(std::move(work)), convert_(std::move(convert)) {}

    static Napi::Promise Start(Napi::Env env, Work work, Convert convert) {
        auto * worker = new PromiseWorker(env, std::move(work), std::move(convert));
        Napi::Promise promise = worker->Promise();
        worker->Queue();
        return promise;
    }

  protected:
    void Execute() override {
        try {
            result_ = work_();
        } catch (const std::exception & e) {
            Fail(e);
        } catch (...) {
            Fail(codes::kInternal, "unknown native error");
        }
    }

    void OnOK() override {
        Napi::Env env = Env();
        Napi::HandleScope scope(env);
        try {
            Resolve(convert_(env, result_));
        } catch (const Napi::Error & e) {
            Reject(e.Value());
        } catch (const std::exception & e) {
            Reject(ErrorFrom(env, e).Value());
        }
    }

  private:
    Work work_;
    Convert convert_;
    Result result_{};
};

// ---- argument helpers ------------------------------------------------------------------------

inline Napi::Object OptionsArg(const Napi::CallbackInfo & info, size_t i) {
    if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return Napi::Object::New(info.Env());
    if (!info[i].IsObject()) throw InvalidType(info.Env(), "options must be an object");
    return info[i].As<Napi::Object>();
}

inline int64_t IntOption(const Napi::Object & o, const char * key, int64_t fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return fallback;
    if (!v.IsNumber()) throw InvalidType(o.Env(), std::string(key) + " must be a number");
    return v.As<Napi::Number>().Int64Value();
}

inline bool BoolOption(const Napi::Object & o, const char * key, bool fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return fallback;
    if (!v.IsBoolean()) throw InvalidType(o.Env(), std::string(key) + " must be a boolean");
    return v.As<Napi::Boolean>().Value();
}

inline std::string StringArg(const Napi::CallbackInfo & info, size_t i, const char * name) {
    if (info.Length() <= i || !info[i].IsString()) throw InvalidType(info.Env(), std::string(name) + " must be a string");
    return info[i].As<Napi::String>().Utf8Value();
}

// Copies an Int32Array / Float32Array property into a vector (the worker must not touch JS memory).
inline std::vector<int32_t> CopyInt32(const Napi::Value & v, const char * name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
        throw InvalidType(v.Env(), std::string(name) + " must be an Int32Array");
    auto arr = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(arr.Data(), arr.Data() + arr.ElementLength());
}

inline std::vector<float> CopyFloat32(const Napi::Value & v, const char * name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw InvalidType(v.Env(), std::string(name) + " must be a Float32Array");
    auto arr = v.As<Napi::Float32Array>();
    return std::vector<float>(arr.Data(), arr.Data() + arr.ElementLength());
}

}  // namespace tallrec
