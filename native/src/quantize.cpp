// quantize(input, output, type, threads): llama.cpp's own quantizer (llama_model_quantize).
#include <filesystem>
#include <map>

#include "common.h"

namespace tallrec {

namespace {

const std::map<std::string, llama_ftype> & FileTypes() {
    static const std::map<std::string, llama_ftype> types = {
        {"F32", LLAMA_FTYPE_ALL_F32},          {"F16", LLAMA_FTYPE_MOSTLY_F16},       {"BF16", LLAMA_FTYPE_MOSTLY_BF16},
        {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},     {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},     {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},
        {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},     {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},     {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},
        {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S}, {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M}, {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L},
        {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M}, {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S},
        {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M}, {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},
    };
    return types;
}

}  // namespace

Napi::Value QuantizeTypes(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env);
    for (const auto & [name, _] : FileTypes()) a.Set(a.Length(), name);
    return a;
}

// quantize(input, output, type, threads = 0) -> Promise<void>
Napi::Value Quantize(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    const std::string input = StringArg(info, 0, "input");
    const std::string output = StringArg(info, 1, "output");
    const std::string type = StringArg(info, 2, "type");
    const int32_t threads = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
    auto it = FileTypes().find(type);
    if (it == FileTypes().end()) throw InvalidRange(env, "unknown quantization type " + type);
    const llama_ftype ftype = it->second;
    return PromiseWorker<bool>::Start(
        env,
        [=]() -> bool {
            BeginLogCapture();
            llama_model_quantize_params p = llama_model_quantize_default_params();
            p.nthread = threads;
            p.ftype = ftype;
            if (llama_model_quantize(input.c_str(), output.c_str(), &p) != 0) {
                std::error_code ec;
                throw Failure(input + ": quantization to " + type + " failed",
                              std::filesystem::exists(input, ec) ? codes::kInvalidFile : codes::kNotFound);
            }
            return true;
        },
        [](Napi::Env env, bool &) -> Napi::Value { return env.Undefined(); });
}

}  // namespace tallrec
