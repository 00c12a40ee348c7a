// llama.cpp's log: captured per thread (to explain failures in JS errors) and optionally
// forwarded to a JS function. Quiet by default: nothing reaches stderr unless asked for.
#include <mutex>

#include "common.h"
#include "ggml.h"

namespace tallrec {

namespace {

constexpr size_t kMaxCapture = 4096;

thread_local std::string tl_capture;
thread_local bool tl_capturing = false;
thread_local int tl_last_level = GGML_LOG_LEVEL_INFO;

struct LogLine {
    int level;
    std::string text;
};

std::mutex g_logger_mutex;
Napi::ThreadSafeFunction g_logger;
bool g_has_logger = false;
int g_min_level = GGML_LOG_LEVEL_ERROR + 1;  // nothing forwarded until SetLogger

void Callback(ggml_log_level level, const char * text, void *) {
    // GGML_LOG_LEVEL_CONT continues the previous message (progress dots): keep its level.
    const int lvl = level == GGML_LOG_LEVEL_CONT ? tl_last_level : static_cast<int>(level);
    tl_last_level = lvl;
    if (text == nullptr) return;
    if (tl_capturing && lvl >= GGML_LOG_LEVEL_WARN) {
        tl_capture += text;
        if (tl_capture.size() > kMaxCapture) tl_capture.erase(0, tl_capture.size() - kMaxCapture);
    }
    std::lock_guard<std::mutex> lock(g_logger_mutex);
    if (!g_has_logger || lvl < g_min_level) return;
    auto * line = new LogLine{lvl, text};
    napi_status st = g_logger.NonBlockingCall(line, [](Napi::Env env, Napi::Function fn, LogLine * l) {
        fn.Call({Napi::Number::New(env, l->level), Napi::String::New(env, l->text)});
        delete l;
    });
    if (st != napi_ok) delete line;
}

}  // namespace

void InstallLogCallback() {
    llama_log_set(Callback, nullptr);
}

void BeginLogCapture() {
    tl_capture.clear();
    tl_capturing = true;
}

std::string CapturedLog() {
    std::string s = tl_capture;
    // one line, no trailing whitespace
    for (char & c : s)
        if (c == '\n') c = ' ';
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
    return s;
}

std::runtime_error Failure(const std::string & what) {
    std::string log = CapturedLog();
    tl_capturing = false;
    return std::runtime_error(log.empty() ? what : what + " (llama.cpp: " + log + ")");
}

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
    }
    return env.Undefined();
}

}  // namespace tallrec
