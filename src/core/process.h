// Running child programs (compilers, make, patch) from the offline stages.
#pragma once

#include <map>
#include <string>
#include <vector>

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
};

// argv[0] is looked up in PATH. Never throws for a non-zero exit; throws ls::Error only if
// the program cannot be started.
RunResult run(const std::vector<std::string>& argv, const RunOptions& options = {});
// `/bin/sh -c command`
RunResult run_shell(const std::string& command, const RunOptions& options = {});

}  // namespace ls
