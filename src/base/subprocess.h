// Running child programs (compilers, make, patch) from the offline stages, and turning
// SIGINT/SIGTERM/SIGHUP into an orderly stop.
//
// What is hard: `create` changes the user's tree while builds run, so an interrupt must
// never kill livesplice before it has put the tree back. Each child therefore runs in
// its own process group (a Ctrl-C reaches livesplice only); the signal handler records
// the signal and forwards it to the running child's group, run() then throws
// ls::Interrupted, and the RAII guards on the way up restore the tree. Signals are
// blocked between fork() and publishing the child's group, so an interrupt cannot slip
// in before the handler knows whom to stop.
#pragma once

#include <csignal>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/diag.h"

namespace ls {

struct RunResult {
  int status = -1;        // exit status, or 128+signal
  std::string output;     // stdout and stderr interleaved (when captured)
};

struct RunOptions {
  std::string cwd;                                  // empty: current directory
  std::map<std::string, std::string> env;           // added to/overriding the environment
  bool capture = true;                              // false: inherit stdout/stderr
  std::string log_file;                             // when set, output is appended here instead
  // A pending interrupt (see SignalGuard) stops the child's process group and makes
  // run() throw ls::Interrupted. Clear it for commands that must finish regardless.
  bool interruptible = true;
};

// argv[0] is looked up in PATH (the PATH of options.env when it sets one). Never throws
// for a non-zero exit; throws ls::Error if the program cannot be started and
// ls::Interrupted when interrupted (see RunOptions::interruptible).
RunResult run(const std::vector<std::string>& argv, const RunOptions& options = {});
// `/bin/sh -c command`
RunResult run_shell(const std::string& command, const RunOptions& options = {});

// The absolute path of `name` found in `path_list` (colon-separated), or nullopt.
// A name containing '/' is returned as is when it is executable.
std::optional<std::string> find_program(const std::string& name, const std::string& path_list);

// Thrown when SIGINT, SIGTERM or SIGHUP arrived while a SignalGuard was active.
class Interrupted : public Error {
 public:
  explicit Interrupted(int sig);
  int signal() const { return signal_; }

 private:
  int signal_;
};

// While alive, SIGINT, SIGTERM and SIGHUP no longer kill the process: they are recorded
// (and forwarded to the running child's process group) so that the code in progress
// can unwind through its guards. Not reentrant: one guard at a time, owned by the
// pipeline that needs it. The destructor reinstates the previous dispositions.
class SignalGuard {
 public:
  SignalGuard();
  ~SignalGuard();
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

  int pending() const;          // the first signal received, or 0
  void check() const;           // throws Interrupted if a signal is pending
  // After cleanup: die of the pending signal, as a shell expects from a killed
  // program. Restores the default disposition first. Returns if none is pending.
  void reraise() const;

 private:
  struct sigaction previous_[3];
};

}  // namespace ls
