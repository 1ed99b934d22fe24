// Support for the live-process tests: building a case's source tree, running the
// programs it builds and reading their output as it comes, running livesplice with a
// time limit, and looking at a process from outside (/proc).
//
// Two rules shape it. Nothing waits unboundedly: every wait has a deadline and its
// failure message carries the recent output. Only processes started here are ever
// signalled, by their own PID (a Program kills and reaps its process on destruction).
// Infrastructure failures throw lsproc::Failure, which GoogleTest reports as a failed
// test with the message; checks about livesplice itself use EXPECT/ASSERT in the tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/support.h"

namespace lsproc {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;
using Json = nlohmann::json;

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using lstest::read_file;
using lstest::TempDir;

using lstest::livesplice;                           // the binary under test
std::string case_dir(const std::string& name);      // tests/process/cases/NAME

// Why ptrace cannot be used from this process ("" when it can): tried once on a child.
std::string ptrace_problem();
// A fixture whose tests fail at once, saying why, when ptrace cannot be used: the
// live-process tests are never skipped.
class PtraceTest : public ::testing::Test {
 protected:
  void SetUp() override;
};

// ---- commands run to completion --------------------------------------------------

// command, status, timed_out, stdout and stderr; json() parses stdout.
using RunResult = lstest::RunResult;

// Runs argv (argv[0] looked up in PATH) in cwd; past `timeout` the child is killed
// (SIGKILL, by PID) and the result says timed_out.
RunResult run(const std::vector<std::string>& argv, const std::string& cwd = {}, Millis timeout = 60s);
// `livesplice ARGS...`
RunResult ls(const std::vector<std::string>& args, Millis timeout = 60s);
// Runs and throws Failure unless it exits 0.
RunResult must(const std::vector<std::string>& argv, const std::string& cwd = {}, Millis timeout = 60s);

// Copies cases/NAME into `dest` (which must not exist) and builds it there with plain
// `make ARGS...` (not through livesplice). Returns dest.
std::string build_case(const std::string& name, const std::string& dest, const std::vector<std::string>& make_args = {});
// Applies a -p1 patch to a tree (to make a variant of it).
void patch_tree(const std::string& dir, const std::string& patch);

// ---- programs that keep running -----------------------------------------------------

// A started process whose stdout and stderr (merged) are read by a thread into lines.
// Line numbers are stable: wait for something after a mark taken earlier.
class Program {
 public:
  struct Options {
    std::string cwd;
    bool stdin_pipe = false;   // else /dev/null
  };
  explicit Program(std::vector<std::string> argv) : Program(std::move(argv), Options()) {}
  Program(std::vector<std::string> argv, Options options);
  ~Program();   // SIGKILL to its PID if still running, reaped
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }

  size_t line_count() const;
  std::string line(size_t i) const;
  std::vector<std::string> lines(size_t from = 0) const;
  // Index of the first line at or after `from` that contains `needle`, waiting up to
  // `timeout`; Failure (with the recent output and whether it still runs) otherwise.
  size_t wait_for(const std::string& needle, size_t from = 0, Millis timeout = 5s) const;
  // Waits until `count` lines at or after `from` contain `needle`; index of the last.
  size_t wait_for_count(const std::string& needle, size_t count, size_t from = 0, Millis timeout = 5s) const;
  // Index of the first line at or after `from` containing `needle`, without waiting.
  std::optional<size_t> find(const std::string& needle, size_t from = 0) const;
  std::string tail(size_t n = 15) const;   // the last lines, for failure messages

  void write_stdin(const std::string& data);

  // Still running (not exited, not killed); reaps it if it ended.
  bool running();
  // "running", "exited with status N", "killed by signal N".
  std::string state();
  // The kernel's start time of the process, read at start: with the PID it identifies
  // the process (a reused PID gets another start time).
  unsigned long long start_time() const { return start_time_; }
  // Running, and /proc/PID is still the process started here.
  bool same_process();

  // SIGKILL (to its PID only) and reap. Idempotent.
  void kill_now();
  // Waits for it to end by itself up to `timeout`; its state() then.
  std::string wait_exit(Millis timeout);

 private:
  void reader();

  std::string name_;
  pid_t pid_ = -1;
  int out_fd_ = -1, in_fd_ = -1;
  int wait_status_ = 0;
  bool reaped_ = false;
  unsigned long long start_time_ = 0;
  std::thread reader_thread_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::string> lines_;
  std::string partial_;
  bool eof_ = false;
};

// ---- looking at a process from outside ----------------------------------------------

struct TaskState {
  pid_t tid = 0;
  char state = '?';         // /proc/PID/task/TID/stat field 3
  pid_t tracer = 0;         // TracerPid in /proc/PID/task/TID/status
};
std::vector<TaskState> tasks(pid_t pid);
// "" when no thread is stopped (t or T) or traced; otherwise which are, for messages.
std::string stopped_or_traced(pid_t pid);
// Waits up to `timeout` for stopped_or_traced() to become ""; returns its last value.
std::string wait_running_untraced(pid_t pid, Millis timeout);
// Lines of /proc/PID/maps containing `needle`.
std::vector<std::string> maps_with(pid_t pid, const std::string& needle);

// Connects to 127.0.0.1:port, sends `request`, reads until the peer closes (bounded).
std::string tcp_request(int port, const std::string& request, Millis timeout = 5s);

}  // namespace lsproc
