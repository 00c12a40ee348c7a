// llama.cpp log capture, free of Node-API (shared with the standalone harness).
#pragma once

#include <stdexcept>
#include <string>

namespace tallrec {

// Installs the llama.cpp/ggml log callback (once).
void InstallLogCallback();

// Starts capturing warnings and errors llama.cpp logs on this thread; CapturedLog() returns them.
void BeginLogCapture();
std::string CapturedLog();

// A failure message: what + llama.cpp's captured explanation when there is one.
std::runtime_error Failure(const std::string & what);

// Where log lines go besides the capture (set by the addon to forward them to JS).
using LogForward = void (*)(int level, const char * text);
void SetLogForward(LogForward forward);

}  // namespace tallrec
