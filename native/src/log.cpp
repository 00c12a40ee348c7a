// Forwarding llama.cpp's log lines to a JS function (setLogger).
#include <mutex>

#include "common.h"
#include "ggml.h"

namespace tallrec {

namespace {

struct LogLine {
    int level;
    std::string text;
};

std::mutex g_logger_mutex;
Napi::ThreadSafeFunction g_logger;
bool g_has_logger = false;
int g_min_level = GGML_LOG_LEVEL_ERROR + 1;

void Forward(int level, const char * text) {
    std::lock_guard<std::mutex> lock(g_logger_mutex);
    if (!g_has_logger || level < g_min_level) return;
    auto * line = new LogLine{level, text};
    napi_status st = g_logger.NonBlockingCall(line, [](Napi::Env env, Napi::Function fn, LogLine * l) {
        fn.Call({Napi::Number::New(env, l->level), Napi::String::New(env, l->text)});
        delete l;
    });
    if (st != napi_ok) delete line;
}

}  // namespace

// setLogger(fn | null, minLevel)
Napi::Value SetLogger(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    std::lock_guard<std::mutex> lock(g_logger_mutex);
    if (g_has_logger) {
        g_logger.Release();
        g_has_logger = false;
    }
    if (info.Length() > 0 && info[0].IsFunction()) {
        g_logger = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "tallrec-log", 0, 1);
        g_logger.Unref(env);  // never keeps the process alive
        g_has_logger = true;
        g_min_level = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : GGML_LOG_LEVEL_WARN;
        SetLogForward(Forward);
    }
    return env.Undefined();
}

}  // namespace tallrec
