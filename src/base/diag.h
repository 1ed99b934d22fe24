// Diagnostics, exit codes and the context object every subsystem receives first.
//
// Offline stages (reading objects, diffing, building an update) report failure by
// throwing ls::Error: nothing they touch is live, so unwinding to main() is the one
// rollback point they need. The message always carries its subject in the form
// `file.o:(.text.foo)+0x12: what went wrong`, built with ls::where().
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace ls {

// Stable exit codes, shared by every subcommand (scripts depend on them).
enum class Exit : int {
  Ok = 0,
  ToolError = 1,   // bad input, failed build, malformed object, bug
  Unsafe = 2,      // the change cannot be applied safely
  NoChange = 3,    // the patch changes no code
};

class Error : public std::runtime_error {
 public:
  explicit Error(std::string msg, Exit code = Exit::ToolError)
      : std::runtime_error(std::move(msg)), code_(code) {}
  Exit code() const { return code_; }

 private:
  Exit code_;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// `file.o:(.text.foo)+0x12` — the prefix of every message about a place in an object.
std::string where(std::string_view file, std::string_view section = {}, int64_t offset = -1);

// `text` safe to print on a terminal: control characters (an escape sequence, a
// carriage return that rewrites the line) and bytes that are not UTF-8 become \xNN.
// Newlines and tabs stay when `multiline`. For every string that comes from an update
// file or a target process: both may be an attacker's.
std::string printable(std::string_view text, bool multiline = false);

class Status;   // base/result.h

// Carried by every stage: output preferences and the progress/warning/failure sink.
// Owned by main(); never a global.
struct Context {
  bool json = false;      // machine-readable output on stdout; progress still on stderr
  int verbose = 0;        // -v: extra detail on stderr
  bool quiet = false;     // no progress lines
  bool color = false;

  void progress(std::string_view msg) const;   // "==> msg" on stderr unless quiet
  void note(std::string_view msg) const;       // only with -v
  void warn(std::string_view msg) const;       // always, "warning: msg"
  // The one printer of what a command must tell even with -q: that it failed, stopped
  // short (no change, interrupted) or put something right first. "livesplice: msg" on
  // stderr, made printable (lines after the first stay: an unsafe list, notes).
  void report(std::string_view msg) const;
  // A live command's failure, reported as above ("livesplice: SUBJECT: message") and,
  // with --json, as `{DONE_KEY: false, "id": ID, "error": message}` on stdout (no "id"
  // when `id` is empty; no JSON when `done_key` is, for a command that prints its own).
  // Returns the exit code: the status's, a tool error if it has none.
  Exit failed(std::string_view subject, const Status& s, std::string_view done_key, std::string_view id) const;
};

}  // namespace ls
