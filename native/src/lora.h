#pragma once

#include "common.h"

namespace tallrec {

// A GGUF LoRA adapter bound to one model. JS: Lora.load(model, path) -> Promise<Lora>.
class Lora : public Napi::ObjectWrap<Lora> {
  public:
    static Napi::Function Define(Napi::Env env);
    explicit Lora(const Napi::CallbackInfo & info);

    std::shared_ptr<LoraHandle> Handle(Napi::Env env) const;
    static Lora * FromValue(const Napi::Value & v, const char * name);

  private:
    static Napi::Value Load(const Napi::CallbackInfo & info);
    Napi::Value Meta(const Napi::CallbackInfo & info);
    Napi::Value Dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<LoraHandle> handle_;
};

}  // namespace tallrec
