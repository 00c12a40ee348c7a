#pragma once

#include "common.h"

namespace tallrec {

// A loaded GGUF model: vocabulary, tokenizer, metadata. JS: Model.load(path, opts) -> Promise<Model>.
class Model : public Napi::ObjectWrap<Model> {
  public:
    static Napi::Function Define(Napi::Env env);
    explicit Model(const Napi::CallbackInfo & info);

    // The handle, or a JS error when the model was disposed.
    std::shared_ptr<ModelHandle> Handle(Napi::Env env) const;
    static Model * FromValue(const Napi::Value & v, const char * name);

  private:
    static Napi::Value Load(const Napi::CallbackInfo & info);
    Napi::Value Tokenize(const Napi::CallbackInfo & info);
    Napi::Value TokenizeBatch(const Napi::CallbackInfo & info);
    Napi::Value Detokenize(const Napi::CallbackInfo & info);
    Napi::Value TokenPiece(const Napi::CallbackInfo & info);
    Napi::Value Info(const Napi::CallbackInfo & info);
    Napi::Value Meta(const Napi::CallbackInfo & info);
    Napi::Value ChatTemplate(const Napi::CallbackInfo & info);
    Napi::Value ApplyChatTemplate(const Napi::CallbackInfo & info);
    Napi::Value Dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<ModelHandle> handle_;
};

}  // namespace tallrec
