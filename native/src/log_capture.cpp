// llama.cpp's log callback: warnings and errors are captured per thread (to explain failures in
// error messages) and every line can be forwarded (the addon forwards to a JS function). Quiet by
// default: nothing reaches stderr.
#include <atomic>
#include <new>

#include "ggml.h"
#include "llama.h"
#include "log.h"

namespace tallrec {

namespace {

constexpr size_t kMaxCapture = 4096;

thread_local std::string tl_capture;
thread_local bool tl_capturing = false;
thread_local int tl_last_level = GGML_LOG_LEVEL_INFO;
std::atomic<LogForward> g_forward{nullptr};

void Callback(ggml_log_level level, const char * text, void *) {
    // GGML_LOG_LEVEL_CONT continues the previous message (progress dots): keep its level.
    const int lvl = level == GGML_LOG_LEVEL_CONT ? tl_last_level : static_cast<int>(level);
    tl_last_level = lvl;
    if (text == nullptr) return;
    if (tl_capturing && lvl >= GGML_LOG_LEVEL_WARN) {
        tl_capture += text;
        if (tl_capture.size() > kMaxCapture) tl_capture.erase(0, tl_capture.size() - kMaxCapture);
    }
    if (LogForward f = g_forward.load()) f(lvl, text);
}

}  // namespace

void InstallLogCallback() {
    llama_log_set(Callback, nullptr);
}

void SetLogForward(LogForward forward) {
    g_forward.store(forward);
}

void BeginLogCapture() {
    tl_capture.clear();
    tl_capturing = true;
}

std::string CapturedLog() {
    std::string s = tl_capture;
    for (char & c : s)
        if (c == '\n') c = ' ';
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
    return s;
}

const char * CodeOf(const std::exception & e) {
    if (auto * coded = dynamic_cast<const CodedFailure *>(&e)) return coded->code();
    if (dynamic_cast<const std::bad_alloc *>(&e)) return codes::kBackend;
    return codes::kInternal;
}

CodedFailure Failure(const std::string & what, const char * code) {
    std::string log = CapturedLog();
    tl_capturing = false;
    return CodedFailure(code, log.empty() ? what : what + " (llama.cpp: " + log + ")");
}

}  // namespace tallrec
