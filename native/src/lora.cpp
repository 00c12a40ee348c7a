// Lora: load a GGUF LoRA adapter onto a model; its metadata.
#include "lora.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "model.h"

namespace tallrec {

Napi::Function Lora::Define(Napi::Env env) {
    return DefineClass(env, "Lora",
                       {
                           StaticMethod<&Lora::Load>("load"),
                           InstanceMethod<&Lora::Meta>("meta"),
                           InstanceMethod<&Lora::Dispose>("dispose"),
                       });
}

Lora::Lora(const Napi::CallbackInfo & info) : Napi::ObjectWrap<Lora>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw InvalidType(info.Env(), "use Lora.load(model, path) to load an adapter");
    handle_ = *info[0].As<Napi::External<std::shared_ptr<LoraHandle>>>().Data();
}

std::shared_ptr<LoraHandle> Lora::Handle(Napi::Env env) const {
    if (!handle_) throw CodedError(env, codes::kClosed, "the LoRA adapter was disposed");
    return handle_;
}

Lora * Lora::FromValue(const Napi::Value & v, const char * name) {
    Napi::Env env = v.Env();
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Data(env).loraCtor.Value()))
        throw InvalidType(env, std::string(name) + " must be a Lora");
    return Napi::ObjectWrap<Lora>::Unwrap(v.As<Napi::Object>());
}

// Lora.load(model, path) -> Promise<Lora>
Napi::Value Lora::Load(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1) throw InvalidType(env, "model is required");
    auto model = Model::FromValue(info[0], "model")->Handle(env);
    std::string path = StringArg(info, 1, "path");

    using Result = std::shared_ptr<LoraHandle>;
    return PromiseWorker<Result>::Start(
        env,
        [=]() -> Result {
            BeginLogCapture();
            FILE * f = std::fopen(path.c_str(), "rb");
            if (!f) {
                const int err = errno;
                throw CodedFailure(err == ENOENT || err == ENOTDIR ? codes::kNotFound : codes::kInvalidFile,
                                   path + ": cannot open LoRA adapter (" + std::strerror(err) + ")");
            }
            char magic[4] = {0, 0, 0, 0};
            const size_t n = std::fread(magic, 1, 4, f);
            std::fclose(f);
            if (n != 4 || std::memcmp(magic, "GGUF", 4) != 0)
                throw CodedFailure(codes::kInvalidFile, path + ": not a GGUF file (bad magic)");
            llama_adapter_lora * a = llama_adapter_lora_init(model->model, path.c_str());
            if (!a) throw Failure(path + ": failed to load LoRA adapter for model " + model->path, codes::kInvalidFile);
            auto h = std::make_shared<LoraHandle>();
            h->model = model;
            h->adapter = a;
            h->path = path;
            return h;
        },
        [](Napi::Env env, Result & h) -> Napi::Value {
            auto ext = Napi::External<Result>::New(env, new Result(h), [](Napi::Env, Result * p) { delete p; });
            return Data(env).loraCtor.New({ext});
        });
}

// meta() -> { key: value-as-string }
Napi::Value Lora::Meta(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    Napi::Object o = Napi::Object::New(env);
    const int32_t n = llama_adapter_meta_count(h->adapter);
    for (int32_t i = 0; i < n; i++) {
        char key[256];
        if (llama_adapter_meta_key_by_index(h->adapter, i, key, sizeof(key)) < 0) continue;
        int32_t len = llama_adapter_meta_val_str_by_index(h->adapter, i, nullptr, 0);
        if (len < 0) continue;
        std::string val(static_cast<size_t>(len) + 1, '\0');
        llama_adapter_meta_val_str_by_index(h->adapter, i, val.data(), val.size());
        val.resize(static_cast<size_t>(len));
        o.Set(key, val);
    }
    return o;
}

Napi::Value Lora::Dispose(const Napi::CallbackInfo & info) {
    handle_.reset();
    return info.Env().Undefined();
}

}  // namespace tallrec
