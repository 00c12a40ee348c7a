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

// The codes of src/errors.ts (ERROR_CODES) that the addon uses: every error it throws or rejects
// with carries one as its `code` (test/native-errors.test.ts checks that each is a known code).
namespace codes {
inline constexpr const char * kInvalidInput = "invalid_input";  // an argument of the wrong type or range
inline constexpr const char * kEmpty = "empty";                 // an empty prompt or text
inline constexpr const char * kTooLong = "too_long";            // a prompt or text longer than the context
inline constexpr const char * kNotFound = "not_found";          // a model/adapter file that does not exist
inline constexpr const char * kInvalidFile = "invalid_file";    // a file llama.cpp cannot load
inline constexpr const char * kBackend = "backend";             // llama.cpp failed (decode, memory, context)
inline constexpr const char * kBusy = "busy";                   // overlapping calls on one context
inline constexpr const char * kAborted = "aborted";             // Context.abort() stopped the call
inline constexpr const char * kClosed = "closed";               // used after dispose()
inline constexpr const char * kInternal = "internal";           // anything else
}  // namespace codes

// An exception with a code from `codes` (thrown on worker threads; the addon rejects with it).
class CodedFailure : public std::runtime_error {
  public:
    CodedFailure(const char * code, const std::string & what) : std::runtime_error(what), code_(code) {}
    const char * code() const noexcept { return code_; }

  private:
    const char * code_;
};

// The code of any exception: a CodedFailure's own, "backend" for std::bad_alloc, else "internal".
const char * CodeOf(const std::exception & e);

// A failure: what + llama.cpp's captured explanation when there is one, with a code (by default
// "backend": llama.cpp failed).
CodedFailure Failure(const std::string & what, const char * code = codes::kBackend);

// Where log lines go besides the capture (set by the addon to forward them to JS).
using LogForward = void (*)(int level, const char * text);
void SetLogForward(LogForward forward);

}  // namespace tallrec
