// What every test area shares: temporary directories, files, running real commands
// (with a deadline when asked), compiling C with gcc, and the paths of the binaries
// under test; readelf.h adds what binutils says about an object. Nothing here is
// mocked; the areas build their own helpers (projects, processes, resolvers) on it.
//
// Only processes started here are ever signalled, by their own PID.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lstest {

using Millis = std::chrono::milliseconds;

// A fresh directory under $TMPDIR (its path canonical), removed with everything in it
// on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// Creates the parent directories; `executable` gives rwxr-xr-x.
void write_file(const std::string& path, const std::string& content, bool executable = false);
std::string read_file(const std::string& path);   // "" when it cannot be read
// `s` as one word for /bin/sh.
std::string quote(const std::string& s);
// The bytes of a file, and writing them; both throw std::runtime_error when they cannot.
std::vector<uint8_t> read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

struct RunResult {
  std::string command;      // for messages
  int status = -1;          // exit status; 128+N when killed by signal N
  bool timed_out = false;   // killed by us at the deadline
  std::string out, err;
  std::string output() const { return out + err; }
  std::string describe() const;        // command, status, stdout and stderr
  nlohmann::json json() const;         // stdout parsed; throws std::runtime_error (with describe()) if not JSON
};

struct RunOptions {
  std::string cwd;
  std::map<std::string, std::string> env;   // added to the environment
  Millis timeout = Millis::zero();          // zero: wait as long as it takes
};

// Runs argv (argv[0] looked up in PATH) with stdin from /dev/null, in a process group of
// its own, collecting stdout and stderr. Past the timeout the child is killed (SIGKILL,
// by its PID) and the result says timed_out.
RunResult run(const std::vector<std::string>& argv, const RunOptions& options);
RunResult run(const std::vector<std::string>& argv, const std::string& cwd = {},
              const std::map<std::string, std::string>& env = {});
// `/bin/sh -c command`.
RunResult sh(const std::string& command, const std::string& cwd = {});
// The stdout of `/bin/sh -c command`; throws std::runtime_error (with describe()) when
// it exits non-zero.
std::string sh_stdout(const std::string& command);

// Writes `source` to DIR/NAME.c and compiles it with `gcc -c FLAGS`; returns the path of
// DIR/NAME.o. Throws like sh_stdout() when gcc fails.
std::string compile_c(const TempDir& dir, const std::string& name, const std::string& source,
                      const std::string& flags);

// Fails the current test (never skips) when a tool the test needs is not installed.
void require_tools(const std::vector<std::string>& tools);

// The binaries under test.
std::string livesplice();
std::string livesplice_cc();

}  // namespace lstest
