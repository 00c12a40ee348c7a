// Model: load a GGUF, tokenize/detokenize, metadata.
#include "model.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tallrec {

Napi::Function Model::Define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {
                           StaticMethod<&Model::Load>("load"),
                           InstanceMethod<&Model::Tokenize>("tokenize"),
                           InstanceMethod<&Model::TokenizeBatch>("tokenizeBatch"),
                           InstanceMethod<&Model::Detokenize>("detokenize"),
                           InstanceMethod<&Model::TokenPiece>("tokenPiece"),
                           InstanceMethod<&Model::Info>("info"),
                           InstanceMethod<&Model::Meta>("meta"),
                           InstanceMethod<&Model::ChatTemplate>("chatTemplate"),
                           InstanceMethod<&Model::ApplyChatTemplate>("applyChatTemplate"),
                           InstanceMethod<&Model::Dispose>("dispose"),
                       });
}

// Constructed only by Model.load, with an External holding the loaded handle.
Model::Model(const Napi::CallbackInfo & info) : Napi::ObjectWrap<Model>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw InvalidType(info.Env(), "use Model.load(path, options) to load a model");
    auto * h = info[0].As<Napi::External<std::shared_ptr<ModelHandle>>>().Data();
    handle_ = *h;
}

std::shared_ptr<ModelHandle> Model::Handle(Napi::Env env) const {
    if (!handle_) throw CodedError(env, codes::kClosed, "the model was disposed");
    return handle_;
}

Model * Model::FromValue(const Napi::Value & v, const char * name) {
    Napi::Env env = v.Env();
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Data(env).modelCtor.Value()))
        throw InvalidType(env, std::string(name) + " must be a Model");
    return Napi::ObjectWrap<Model>::Unwrap(v.As<Napi::Object>());
}

// Model.load(path, { gpuLayers = 0, useMmap = true, vocabOnly = false }) -> Promise<Model>
Napi::Value Model::Load(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    std::string path = StringArg(info, 0, "path");
    Napi::Object opts = OptionsArg(info, 1);
    const int gpuLayers = static_cast<int>(IntOption(opts, "gpuLayers", 0));
    const bool useMmap = BoolOption(opts, "useMmap", true);
    const bool vocabOnly = BoolOption(opts, "vocabOnly", false);

    using Result = std::shared_ptr<ModelHandle>;
    return PromiseWorker<Result>::Start(
        env,
        [=]() -> Result {
            BeginLogCapture();
            FILE * f = std::fopen(path.c_str(), "rb");
            if (!f) {
                const int err = errno;
                throw CodedFailure(err == ENOENT || err == ENOTDIR ? codes::kNotFound : codes::kInvalidFile,
                                   path + ": cannot open model file (" + std::strerror(err) + ")");
            }
            char magic[4] = {0, 0, 0, 0};
            const size_t n = std::fread(magic, 1, 4, f);
            std::fclose(f);
            if (n != 4 || std::memcmp(magic, "GGUF", 4) != 0)
                throw CodedFailure(codes::kInvalidFile, path + ": not a GGUF file (bad magic)");

            llama_model_params p = llama_model_default_params();
            p.n_gpu_layers = gpuLayers;
            p.load_mode = useMmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
            p.vocab_only = vocabOnly;
            llama_model * model = llama_model_load_from_file(path.c_str(), p);
            if (!model) throw Failure(path + ": failed to load model", codes::kInvalidFile);
            auto h = std::make_shared<ModelHandle>();
            h->model = model;
            h->vocab = llama_model_get_vocab(model);
            h->path = path;
            return h;
        },
        [](Napi::Env env, Result & h) -> Napi::Value {
            auto ext = Napi::External<Result>::New(env, new Result(h), [](Napi::Env, Result * p) { delete p; });
            return Data(env).modelCtor.New({ext});
        });
}

static std::vector<llama_token> TokenizeText(const ModelHandle & h, const std::string & text, bool addSpecial, bool parseSpecial) {
    if (text.size() > static_cast<size_t>(INT32_MAX / 2)) throw CodedFailure(codes::kTooLong, "text is too long to tokenize");
    std::vector<llama_token> out(text.size() + 4);
    int32_t n = llama_tokenize(h.vocab, text.data(), static_cast<int32_t>(text.size()), out.data(), static_cast<int32_t>(out.size()),
                               addSpecial, parseSpecial);
    if (n < 0) {
        if (n == INT32_MIN) throw CodedFailure(codes::kTooLong, "tokenization overflow");
        out.resize(static_cast<size_t>(-n));
        n = llama_tokenize(h.vocab, text.data(), static_cast<int32_t>(text.size()), out.data(), static_cast<int32_t>(out.size()),
                           addSpecial, parseSpecial);
        if (n < 0) throw CodedFailure(codes::kInternal, "tokenization failed");
    }
    out.resize(static_cast<size_t>(n));
    return out;
}

static Napi::Int32Array ToInt32Array(Napi::Env env, const std::vector<llama_token> & v) {
    auto arr = Napi::Int32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(arr.Data(), v.data(), sizeof(int32_t) * v.size());
    return arr;
}

// tokenize(text, addSpecial = true, parseSpecial = false) -> Int32Array
Napi::Value Model::Tokenize(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    std::string text = StringArg(info, 0, "text");
    const bool addSpecial = info.Length() > 1 && info[1].IsBoolean() ? info[1].As<Napi::Boolean>().Value() : true;
    const bool parseSpecial = info.Length() > 2 && info[2].IsBoolean() ? info[2].As<Napi::Boolean>().Value() : false;
    try {
        return ToInt32Array(env, TokenizeText(*h, text, addSpecial, parseSpecial));
    } catch (const std::exception & e) {
        throw ErrorFrom(env, e);
    }
}

// tokenizeBatch(texts: string[], addSpecial = true, parseSpecial = false) -> Promise<Int32Array[]>
// (off the JS thread: tokenizing thousands of prompts would otherwise stall the event loop)
Napi::Value Model::TokenizeBatch(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    if (info.Length() < 1 || !info[0].IsArray()) throw InvalidType(env, "texts must be an array of strings");
    auto arr = info[0].As<Napi::Array>();
    auto texts = std::make_shared<std::vector<std::string>>();
    texts->reserve(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value v = arr.Get(i);
        if (!v.IsString()) throw InvalidType(env, "texts[" + std::to_string(i) + "] must be a string");
        texts->push_back(v.As<Napi::String>().Utf8Value());
    }
    const bool addSpecial = info.Length() > 1 && info[1].IsBoolean() ? info[1].As<Napi::Boolean>().Value() : true;
    const bool parseSpecial = info.Length() > 2 && info[2].IsBoolean() ? info[2].As<Napi::Boolean>().Value() : false;
    using Result = std::shared_ptr<std::vector<std::vector<llama_token>>>;
    return PromiseWorker<Result>::Start(
        env,
        [h, texts, addSpecial, parseSpecial]() -> Result {
            auto out = std::make_shared<std::vector<std::vector<llama_token>>>();
            out->reserve(texts->size());
            for (const auto & t : *texts) out->push_back(TokenizeText(*h, t, addSpecial, parseSpecial));
            return out;
        },
        [](Napi::Env env, Result & r) -> Napi::Value {
            Napi::Array a = Napi::Array::New(env, r->size());
            for (size_t i = 0; i < r->size(); i++) a.Set(static_cast<uint32_t>(i), ToInt32Array(env, (*r)[i]));
            return a;
        });
}

static void CheckTokens(Napi::Env env, const ModelHandle & h, const int32_t * t, size_t n) {
    const int32_t nVocab = llama_vocab_n_tokens(h.vocab);
    for (size_t i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= nVocab)
            throw InvalidRange(env, "token id " + std::to_string(t[i]) + " at index " + std::to_string(i) +
                                        " is outside the vocabulary (0.." + std::to_string(nVocab - 1) + ")");
}

// detokenize(Int32Array, removeSpecial = false, unparseSpecial = false) -> string
Napi::Value Model::Detokenize(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw InvalidType(env, "tokens must be an Int32Array");
    std::vector<int32_t> tokens = CopyInt32(info[0], "tokens");
    CheckTokens(env, *h, tokens.data(), tokens.size());
    const bool removeSpecial = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    const bool unparseSpecial = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    std::string text(tokens.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(h->vocab, tokens.data(), static_cast<int32_t>(tokens.size()), text.data(),
                                 static_cast<int32_t>(text.size()), removeSpecial, unparseSpecial);
    if (n < 0) {
        text.resize(static_cast<size_t>(-n));
        n = llama_detokenize(h->vocab, tokens.data(), static_cast<int32_t>(tokens.size()), text.data(), static_cast<int32_t>(text.size()),
                             removeSpecial, unparseSpecial);
        if (n < 0) throw CodedError(env, codes::kInternal, "detokenization failed");
    }
    text.resize(static_cast<size_t>(n));
    return Napi::String::New(env, text);
}

// tokenPiece(id, special = true) -> string: the bytes one token renders to (may be a partial UTF-8
// sequence, returned as a Buffer then).
Napi::Value Model::TokenPiece(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    if (info.Length() < 1 || !info[0].IsNumber()) throw InvalidType(env, "token must be a number");
    int32_t id = info[0].As<Napi::Number>().Int32Value();
    CheckTokens(env, *h, &id, 1);
    const bool special = !(info.Length() > 1 && info[1].IsBoolean()) || info[1].As<Napi::Boolean>().Value();
    char buf[256];
    int32_t n = llama_token_to_piece(h->vocab, id, buf, sizeof(buf), 0, special);
    if (n < 0) throw CodedError(env, codes::kInternal, "token piece too long");
    return Napi::Buffer<char>::Copy(env, buf, static_cast<size_t>(n));
}

static std::string MetaString(int32_t (*get)(const llama_model *, int32_t, char *, size_t), const llama_model * m, int32_t i) {
    int32_t n = get(m, i, nullptr, 0);
    if (n < 0) return std::string();
    std::string s(static_cast<size_t>(n) + 1, '\0');
    get(m, i, s.data(), s.size());
    s.resize(static_cast<size_t>(n));
    return s;
}

// info() -> { nVocab, nCtxTrain, nEmbd, nLayer, nHead, nHeadKv, nParams, size, description, bos, eos, ... }
Napi::Value Model::Info(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    const llama_model * m = h->model;
    Napi::Object o = Napi::Object::New(env);
    char desc[256];
    llama_model_desc(m, desc, sizeof(desc));
    o.Set("path", h->path);
    o.Set("description", std::string(desc));
    o.Set("nVocab", llama_vocab_n_tokens(h->vocab));
    o.Set("nCtxTrain", llama_model_n_ctx_train(m));
    o.Set("nEmbd", llama_model_n_embd(m));
    o.Set("nLayer", llama_model_n_layer(m));
    o.Set("nHead", llama_model_n_head(m));
    o.Set("nHeadKv", llama_model_n_head_kv(m));
    o.Set("nParams", static_cast<double>(llama_model_n_params(m)));
    o.Set("size", static_cast<double>(llama_model_size(m)));
    o.Set("bos", llama_vocab_bos(h->vocab));
    o.Set("eos", llama_vocab_eos(h->vocab));
    o.Set("eot", llama_vocab_eot(h->vocab));
    o.Set("addBos", llama_vocab_get_add_bos(h->vocab));
    o.Set("addEos", llama_vocab_get_add_eos(h->vocab));
    return o;
}

// meta() -> { key: value-as-string } (GGUF arrays are not included by llama.cpp's accessor)
Napi::Value Model::Meta(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    Napi::Object o = Napi::Object::New(env);
    const int32_t n = llama_model_meta_count(h->model);
    for (int32_t i = 0; i < n; i++) {
        std::string key = MetaString(llama_model_meta_key_by_index, h->model, i);
        if (key.empty()) continue;
        o.Set(key, MetaString(llama_model_meta_val_str_by_index, h->model, i));
    }
    return o;
}

// chatTemplate() -> string | null: the model's default chat template from its GGUF.
Napi::Value Model::ChatTemplate(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    const char * tmpl = llama_model_chat_template(h->model, nullptr);
    if (!tmpl) return env.Null();
    return Napi::String::New(env, tmpl);
}

// applyChatTemplate(messages: {role, content}[], addAssistant = true, template?) -> string | null:
// the conversation formatted with the model's chat template (or the given one); null when the
// model has none or llama.cpp does not know the template.
Napi::Value Model::ApplyChatTemplate(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto h = Handle(env);
    if (info.Length() < 1 || !info[0].IsArray()) throw InvalidType(env, "messages must be an array of { role, content }");
    auto arr = info[0].As<Napi::Array>();
    std::vector<std::string> roles, contents;
    for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value m = arr.Get(i);
        if (!m.IsObject()) throw InvalidType(env, "messages[" + std::to_string(i) + "] must be { role, content }");
        Napi::Value r = m.As<Napi::Object>().Get("role"), c = m.As<Napi::Object>().Get("content");
        if (!r.IsString() || !c.IsString()) throw InvalidType(env, "messages[" + std::to_string(i) + "] needs string role and content");
        roles.push_back(r.As<Napi::String>().Utf8Value());
        contents.push_back(c.As<Napi::String>().Utf8Value());
    }
    const bool addAssistant = !(info.Length() > 1 && info[1].IsBoolean()) || info[1].As<Napi::Boolean>().Value();
    std::string tmplOwned;
    const char * tmpl = nullptr;
    if (info.Length() > 2 && info[2].IsString()) {
        tmplOwned = info[2].As<Napi::String>().Utf8Value();
        tmpl = tmplOwned.c_str();
    } else {
        tmpl = llama_model_chat_template(h->model, nullptr);
    }
    if (!tmpl) return env.Null();
    std::vector<llama_chat_message> msgs;
    size_t total = 0;
    for (size_t i = 0; i < roles.size(); i++) {
        msgs.push_back({roles[i].c_str(), contents[i].c_str()});
        total += roles[i].size() + contents[i].size();
    }
    std::string buf(total * 2 + 256, '\0');
    int32_t n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), addAssistant, buf.data(), static_cast<int32_t>(buf.size()));
    if (n < 0) return env.Null();
    if (static_cast<size_t>(n) > buf.size()) {
        buf.resize(static_cast<size_t>(n));
        n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), addAssistant, buf.data(), static_cast<int32_t>(buf.size()));
        if (n < 0) return env.Null();
    }
    buf.resize(static_cast<size_t>(n));
    return Napi::String::New(env, buf);
}

// dispose(): drops this object's reference; the weights are freed once no context or adapter
// still uses them.
Napi::Value Model::Dispose(const Napi::CallbackInfo & info) {
    handle_.reset();
    return info.Env().Undefined();
}

}  // namespace tallrec
