// Module entry: backend initialisation, devices, logging, and the Model / Lora / Context classes.
#include <mutex>

#include "common.h"
#include "context.h"
#include "ggml-backend.h"
#include "lora.h"
#include "model.h"

namespace tallrec {

Napi::Value Quantize(const Napi::CallbackInfo & info);       // quantize.cpp
Napi::Value QuantizeTypes(const Napi::CallbackInfo & info);  // quantize.cpp

namespace {

std::once_flag g_backend_once;

// init(backendDir?: string): loads llama.cpp's dynamic backends from backendDir (prebuilt
// libraries) and initialises llama.cpp, once per process.
Napi::Value Init(const Napi::CallbackInfo & info) {
    std::string dir = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    std::call_once(g_backend_once, [&]() {
        InstallLogCallback();
#ifdef TALLREC_BACKEND_DL
        if (!dir.empty()) ggml_backend_load_all_from_path(dir.c_str());
#endif
        llama_backend_init();
    });
    return info.Env().Undefined();
}

const char * DeviceType(enum ggml_backend_dev_type t) {
    switch (t) {
        case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
        case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
        case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
        case GGML_BACKEND_DEVICE_TYPE_ACCEL: return "accel";
        default: return "other";
    }
}

// devices() -> [{ name, description, type, memoryFree, memoryTotal }]
Napi::Value Devices(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Napi::Array arr = Napi::Array::New(env);
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        size_t freeMem = 0, total = 0;
        ggml_backend_dev_memory(d, &freeMem, &total);
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", ggml_backend_dev_name(d));
        o.Set("description", ggml_backend_dev_description(d));
        o.Set("type", DeviceType(ggml_backend_dev_type(d)));
        o.Set("memoryFree", static_cast<double>(freeMem));
        o.Set("memoryTotal", static_cast<double>(total));
        arr.Set(static_cast<uint32_t>(arr.Length()), o);
    }
    return arr;
}

Napi::Value SystemInfo(const Napi::CallbackInfo & info) {
    return Napi::String::New(info.Env(), llama_print_system_info());
}

}  // namespace

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
    auto * data = new AddonData();
    env.SetInstanceData<AddonData>(data);
    Napi::Function model = Model::Define(env);
    Napi::Function lora = Lora::Define(env);
    Napi::Function context = Context::Define(env);
    data->modelCtor = Napi::Persistent(model);
    data->loraCtor = Napi::Persistent(lora);
    data->contextCtor = Napi::Persistent(context);
    exports.Set("Model", model);
    exports.Set("Lora", lora);
    exports.Set("Context", context);
    exports.Set("init", Napi::Function::New(env, Init, "init"));
    exports.Set("devices", Napi::Function::New(env, Devices, "devices"));
    exports.Set("systemInfo", Napi::Function::New(env, SystemInfo, "systemInfo"));
    exports.Set("setLogger", Napi::Function::New(env, SetLogger, "setLogger"));
    exports.Set("quantize", Napi::Function::New(env, Quantize, "quantize"));
    exports.Set("quantizeTypes", Napi::Function::New(env, QuantizeTypes, "quantizeTypes"));
    exports.Set("maxSequences", Napi::Number::New(env, kMaxSeq));
#ifdef TALLREC_BACKEND_DL
    exports.Set("linkage", Napi::String::New(env, "prebuilt"));
#else
    exports.Set("linkage", Napi::String::New(env, "source"));
#endif
    return exports;
}

}  // namespace tallrec

static Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
    return tallrec::InitModule(env, exports);
}

NODE_API_MODULE(tallrec, InitAll)
