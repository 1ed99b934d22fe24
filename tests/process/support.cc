#include "support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace lsproc {

namespace {

using Clock = std::chrono::steady_clock;

// fork + exec with stdout/stderr to the given fds (-1: keep), stdin from `in` (-1:
// /dev/null). The child gets its own process group so that a timeout kill of its PID
// does not race with our own signals. Never returns in the child.
pid_t spawn(const std::vector<std::string>& argv, const std::string& cwd, int in, int out, int err) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) throw Failure(std::string("fork: ") + strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);
    int null = open("/dev/null", O_RDWR);
    dup2(in >= 0 ? in : null, 0);
    if (out >= 0) dup2(out, 1);
    if (err >= 0) dup2(err, 2);
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(127);
    execvp(args[0], args.data());
    dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  return pid;
}

unsigned long long read_start_time(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream in(stat.substr(close_paren + 2));
  std::string field;
  // Fields after the command: state is field 3; starttime is field 22.
  for (int i = 3; i <= 22 && in >> field; ++i)
    if (i == 22) return std::stoull(field);
  return 0;
}

}  // namespace

// ---- cases and ptrace ----------------------------------------------------------------

std::string case_dir(const std::string& name) { return std::string(PROCESS_CASES_DIR) + "/" + name; }

std::string ptrace_problem() {
  static const std::string problem = [] {
    pid_t child = fork();
    if (child < 0) return std::string("fork failed");
    if (child == 0) {
      pause();
      _exit(0);
    }
    std::string why;
    if (ptrace(PTRACE_SEIZE, child, 0, 0) != 0) {
      why = std::string("PTRACE_SEIZE of a child process failed: ") + strerror(errno) +
            " (yama ptrace_scope, a container without CAP_SYS_PTRACE, or a seccomp filter?)";
    } else {
      ptrace(PTRACE_INTERRUPT, child, 0, 0);
      int st = 0;
      if (waitpid(child, &st, __WALL) != child || !WIFSTOPPED(st))
        why = "PTRACE_INTERRUPT of a seized child did not stop it";
      ptrace(PTRACE_DETACH, child, 0, 0);
    }
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return why;
  }();
  return problem;
}

void PtraceTest::SetUp() {
  std::string why = ptrace_problem();
  ASSERT_EQ(why, "") << "the live-process tests need ptrace and are never skipped";
}

// ---- commands -------------------------------------------------------------------------

RunResult run(const std::vector<std::string>& argv, const std::string& cwd, Millis timeout) {
  lstest::RunOptions o;
  o.cwd = cwd;
  o.timeout = timeout;
  return lstest::run(argv, o);
}

RunResult ls(const std::vector<std::string>& args, Millis timeout) {
  std::vector<std::string> argv{livesplice()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {}, timeout);
}

RunResult must(const std::vector<std::string>& argv, const std::string& cwd, Millis timeout) {
  RunResult r = run(argv, cwd, timeout);
  if (r.status != 0 || r.timed_out) throw Failure("command failed" + (cwd.empty() ? "" : " in " + cwd) + ":\n" + r.describe());
  return r;
}

std::string build_case(const std::string& name, const std::string& dest, const std::vector<std::string>& make_args) {
  if (fs::exists(dest)) throw Failure("build_case: " + dest + " exists");
  fs::copy(case_dir(name), dest, fs::copy_options::recursive);
  std::vector<std::string> argv{"make", "-s"};
  argv.insert(argv.end(), make_args.begin(), make_args.end());
  must(argv, dest, 120s);
  return dest;
}

void patch_tree(const std::string& dir, const std::string& patch) {
  must({"patch", "-s", "-p1", "-i", patch}, dir);
}

// ---- Program ----------------------------------------------------------------------------

Program::Program(std::vector<std::string> argv, Options options) {
  name_ = fs::path(argv.at(0)).filename().string();
  int out[2], in[2] = {-1, -1};
  if (pipe2(out, O_CLOEXEC) != 0) throw Failure("pipe");
  if (options.stdin_pipe && pipe2(in, O_CLOEXEC) != 0) throw Failure("pipe");
  pid_ = spawn(argv, options.cwd, in[0], out[1], out[1]);
  close(out[1]);
  if (in[0] >= 0) close(in[0]);
  out_fd_ = out[0];
  in_fd_ = in[1];
  // The start time identifies the process; read it while it certainly is ours (it
  // cannot be reaped before we wait for it).
  for (int i = 0; i < 100 && start_time_ == 0; ++i) start_time_ = read_start_time(pid_);
  reader_thread_ = std::thread([this] { reader(); });
}

Program::~Program() {
  kill_now();
  if (reader_thread_.joinable()) reader_thread_.join();
  if (out_fd_ >= 0) close(out_fd_);
  if (in_fd_ >= 0) close(in_fd_);
}

void Program::reader() {
  char buf[65536];
  for (;;) {
    pollfd p{out_fd_, POLLIN, 0};
    int n = poll(&p, 1, 100);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) {
      std::lock_guard lock(mu_);
      if (reaped_) break;   // killed, and nothing left to read
      continue;
    }
    ssize_t got = read(out_fd_, buf, sizeof buf);
    std::lock_guard lock(mu_);
    if (got <= 0) {
      eof_ = true;
      cv_.notify_all();
      break;
    }
    partial_.append(buf, static_cast<size_t>(got));
    size_t start = 0, nl;
    while ((nl = partial_.find('\n', start)) != std::string::npos) {
      lines_.push_back(partial_.substr(start, nl - start));
      start = nl + 1;
    }
    partial_.erase(0, start);
    cv_.notify_all();
  }
}

size_t Program::line_count() const {
  std::lock_guard lock(mu_);
  return lines_.size();
}

std::string Program::line(size_t i) const {
  std::lock_guard lock(mu_);
  return i < lines_.size() ? lines_[i] : std::string();
}

std::vector<std::string> Program::lines(size_t from) const {
  std::lock_guard lock(mu_);
  if (from >= lines_.size()) return {};
  return {lines_.begin() + static_cast<long>(from), lines_.end()};
}

std::optional<size_t> Program::find(const std::string& needle, size_t from) const {
  std::lock_guard lock(mu_);
  for (size_t i = from; i < lines_.size(); ++i)
    if (lines_[i].find(needle) != std::string::npos) return i;
  return std::nullopt;
}

size_t Program::wait_for(const std::string& needle, size_t from, Millis timeout) const {
  return wait_for_count(needle, 1, from, timeout);
}

size_t Program::wait_for_count(const std::string& needle, size_t count, size_t from, Millis timeout) const {
  auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu_);
  size_t seen = 0, scanned = from;
  for (;;) {
    for (; scanned < lines_.size(); ++scanned)
      if (lines_[scanned].find(needle) != std::string::npos && ++seen == count) return scanned;
    if (eof_ || cv_.wait_until(lock, deadline) == std::cv_status::timeout) break;
  }
  lock.unlock();
  std::ostringstream s;
  s << name_ << " (pid " << pid_ << "): " << (eof_ ? "output ended" : "timed out") << " after " << seen << " of "
    << count << " line(s) containing '" << needle << "' from line " << from << "; it is "
    << const_cast<Program*>(this)->state() << "; last lines:\n" << tail();
  throw Failure(s.str());
}

std::string Program::tail(size_t n) const {
  std::lock_guard lock(mu_);
  std::string s;
  size_t from = lines_.size() > n ? lines_.size() - n : 0;
  for (size_t i = from; i < lines_.size(); ++i) s += "  " + std::to_string(i) + ": " + lines_[i] + "\n";
  if (!partial_.empty()) s += "  (partial): " + partial_ + "\n";
  return s.empty() ? "  (no output)\n" : s;
}

void Program::write_stdin(const std::string& data) {
  if (in_fd_ < 0) throw Failure(name_ + ": started without a stdin pipe");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(in_fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Failure(name_ + ": write to stdin: " + strerror(errno));
    done += static_cast<size_t>(n);
  }
}

bool Program::running() {
  std::lock_guard lock(mu_);
  if (reaped_) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    wait_status_ = st;
    return false;
  }
  return true;
}

std::string Program::state() {
  if (running()) return "running";
  std::lock_guard lock(mu_);
  if (WIFEXITED(wait_status_)) return "exited with status " + std::to_string(WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) return "killed by signal " + std::to_string(WTERMSIG(wait_status_));
  return "ended";
}

bool Program::same_process() { return running() && read_start_time(pid_) == start_time_ && start_time_ != 0; }

void Program::kill_now() {
  std::lock_guard lock(mu_);
  if (reaped_) return;
  kill(pid_, SIGKILL);
  int st = 0;
  while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  wait_status_ = st;
  reaped_ = true;
}

std::string Program::wait_exit(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (running() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  return state();
}

// ---- /proc ------------------------------------------------------------------------------

std::vector<TaskState> tasks(pid_t pid) {
  std::vector<TaskState> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    TaskState t;
    t.tid = static_cast<pid_t>(std::stol(entry.path().filename().string()));
    std::string stat = read_file(entry.path().string() + "/stat");
    size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos || close_paren + 2 >= stat.size()) continue;   // gone
    t.state = stat[close_paren + 2];
    std::istringstream status(read_file(entry.path().string() + "/status"));
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("TracerPid:", 0) == 0) t.tracer = static_cast<pid_t>(std::stol(line.substr(10)));
    out.push_back(t);
  }
  return out;
}

std::string stopped_or_traced(pid_t pid) {
  std::string s;
  auto all = tasks(pid);
  if (all.empty()) return "no threads left (the process is gone)";
  for (const auto& t : tasks(pid))
    if (t.state == 't' || t.state == 'T' || t.tracer != 0)
      s += "thread " + std::to_string(t.tid) + " state " + t.state + " tracer " + std::to_string(t.tracer) + "; ";
  return s;
}

std::string wait_running_untraced(pid_t pid, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  std::string s;
  while (!(s = stopped_or_traced(pid)).empty() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  return s;
}

std::vector<std::string> maps_with(pid_t pid, const std::string& needle) {
  std::istringstream maps(read_file("/proc/" + std::to_string(pid) + "/maps"));
  std::vector<std::string> out;
  std::string line;
  while (std::getline(maps, line))
    if (line.find(needle) != std::string::npos) out.push_back(line);
  return out;
}

std::string tcp_request(int port, const std::string& request, Millis timeout) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Failure(std::string("socket: ") + strerror(errno));
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::string e = strerror(errno);
    close(fd);
    throw Failure("connect to 127.0.0.1:" + std::to_string(port) + ": " + e);
  }
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    throw Failure("write to 127.0.0.1:" + std::to_string(port) + " failed");
  }
  std::string reply;
  char buf[4096];
  auto deadline = Clock::now() + timeout;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      reply.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR && Clock::now() < deadline) continue;
    if (n < 0) {
      std::string e = strerror(errno);
      close(fd);
      throw Failure("read from 127.0.0.1:" + std::to_string(port) + ": " + e + "; got so far: '" + reply + "'");
    }
    break;
  }
  close(fd);
  return reply;
}

}  // namespace lsproc
