// See process.h for the interrupt protocol. The two file-level variables below are the
// one place this project keeps process-wide state: a signal handler receives no
// argument, so what it needs (the signal seen, the group to forward it to) cannot live
// in a Context. Both are lock-free atomics, safe to touch from the handler.
#include "base/subprocess.h"

#include <atomic>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace ls {
namespace {

std::atomic<int> g_pending_signal{0};
std::atomic<pid_t> g_child_group{0};
std::atomic<bool> g_guard_active{false};

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};

void on_signal(int sig) {
  int expected = 0;
  g_pending_signal.compare_exchange_strong(expected, sig);
  pid_t group = g_child_group.load();
  if (group > 0) kill(-group, sig);
}

sigset_t interrupt_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kSignals) sigaddset(&set, s);
  return set;
}

bool executable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// The environment of the child: ours, with options.env laid over it.
std::vector<std::string> child_environment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos && extra.count(std::string(kv.substr(0, eq)))) continue;
    out.emplace_back(kv);
  }
  for (const auto& [k, v] : extra) out.push_back(k + "=" + v);
  return out;
}

std::string describe(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

}  // namespace

std::optional<std::string> find_program(const std::string& name, const std::string& path_list) {
  if (name.find('/') != std::string::npos) {
    if (executable(name)) return name;
    return std::nullopt;
  }
  size_t start = 0;
  while (start <= path_list.size()) {
    size_t end = path_list.find(':', start);
    if (end == std::string::npos) end = path_list.size();
    std::string dir = path_list.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    if (executable(candidate)) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

RunResult run(const std::vector<std::string>& argv, const RunOptions& options) {
  if (argv.empty()) fail("run: empty command line");
  if (options.interruptible && g_pending_signal.load())
    throw Interrupted(g_pending_signal.load());

  std::string path_list;
  if (auto it = options.env.find("PATH"); it != options.env.end()) path_list = it->second;
  else if (const char* p = getenv("PATH")) path_list = p;
  else path_list = "/usr/bin:/bin";
  auto program = find_program(argv[0], path_list);
  if (!program) fail("cannot run '{}': not found in PATH", argv[0]);

  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls are allowed.
  std::vector<std::string> env_strings = child_environment(options.env);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  int out_fd = -1;
  int pipe_fds[2] = {-1, -1};
  if (!options.log_file.empty()) {
    out_fd = open(options.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0) fail("cannot open log file {}: {}", options.log_file, strerror(errno));
  } else if (options.capture) {
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) fail("pipe: {}", strerror(errno));
    out_fd = pipe_fds[1];
  }

  sigset_t block = interrupt_set(), old_mask;
  sigprocmask(SIG_BLOCK, &block, &old_mask);
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    for (int s : kSignals) signal(s, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    if (out_fd >= 0) {
      dup2(out_fd, 1);
      dup2(out_fd, 2);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) {
      const char msg[] = "livesplice: cannot enter the working directory\n";
      (void)!write(2, msg, sizeof msg - 1);
      _exit(127);
    }
    execve(program->c_str(), cargv.data(), envp.data());
    const char msg[] = "livesplice: exec failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  int fork_errno = errno;
  if (pid > 0) {
    setpgid(pid, pid);   // also done by the child; whichever runs first wins the race
    if (options.interruptible) g_child_group.store(pid);
  }
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  if (pipe_fds[1] >= 0) close(pipe_fds[1]);
  else if (out_fd >= 0) close(out_fd);
  if (pid < 0) {
    if (pipe_fds[0] >= 0) close(pipe_fds[0]);
    fail("cannot start '{}': fork: {}", describe(argv), strerror(fork_errno));
  }

  // Wait for the child while reading its output. The loop wakes up every 50 ms so that
  // an interrupt is acted on even when the handler could not stop the child: the handler
  // ran before the group was published, or the build ignores SIGINT (a `trap '' INT`,
  // a shell started with it ignored). Escalation: the signal itself, SIGTERM after 2 s,
  // SIGKILL after 5 s.
  RunResult result;
  int wstatus = 0;
  bool exited = false;
  int fd = pipe_fds[0];
  auto interrupted_at = std::chrono::steady_clock::time_point::min();
  int escalation = 0;
  while (!exited || fd >= 0) {
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) {
        char buf[65536];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
          result.output.append(buf, static_cast<size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          close(fd);
          fd = -1;
        }
      }
    } else {
      struct timespec ts {0, 50 * 1000 * 1000};
      nanosleep(&ts, nullptr);
    }
    if (!exited) {
      pid_t w = waitpid(pid, &wstatus, WNOHANG);
      if (w == pid) {
        exited = true;
      } else if (w < 0 && errno != EINTR) {
        g_child_group.store(0);
        if (fd >= 0) close(fd);
        fail("waitpid for '{}': {}", argv[0], strerror(errno));
      }
    }
    if (options.interruptible && g_pending_signal.load()) {
      auto now = std::chrono::steady_clock::now();
      if (escalation == 0) {
        interrupted_at = now;
        kill(-pid, g_pending_signal.load());
        escalation = 1;
      } else if (escalation == 1 && now - interrupted_at > std::chrono::seconds(2)) {
        kill(-pid, SIGTERM);
        escalation = 2;
      } else if (escalation == 2 && now - interrupted_at > std::chrono::seconds(5)) {
        kill(-pid, SIGKILL);
        escalation = 3;
      }
      // Output still held open by a straggler of the group is not worth waiting for.
      if (exited && fd >= 0) {
        close(fd);
        fd = -1;
      }
    }
  }
  g_child_group.store(0);
  // The group may outlive its leader (a make job still running): stop what is left
  // of it when interrupted, so nothing writes to the tree while it is restored.
  if (options.interruptible && g_pending_signal.load()) {
    kill(-pid, SIGKILL);
    throw Interrupted(g_pending_signal.load());
  }
  if (WIFEXITED(wstatus)) result.status = WEXITSTATUS(wstatus);
  else if (WIFSIGNALED(wstatus)) result.status = 128 + WTERMSIG(wstatus);
  return result;
}

RunResult run_shell(const std::string& command, const RunOptions& options) {
  return run({"/bin/sh", "-c", command}, options);
}

Interrupted::Interrupted(int sig)
    : Error(fmt::format("interrupted by {}", sigabbrev_np(sig) ? std::string("SIG") + sigabbrev_np(sig)
                                                                : std::to_string(sig))),
      signal_(sig) {}

SignalGuard::SignalGuard() {
  if (g_guard_active.exchange(true)) fail("internal: nested SignalGuard");
  g_pending_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;   // no SA_RESTART: a blocking read/wait returns EINTR
  for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &sa, &previous_[i]);
}

SignalGuard::~SignalGuard() {
  for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &previous_[i], nullptr);
  g_guard_active.store(false);
}

int SignalGuard::pending() const { return g_pending_signal.load(); }

void SignalGuard::check() const {
  if (int s = g_pending_signal.load()) throw Interrupted(s);
}

void SignalGuard::reraise() const {
  int s = g_pending_signal.load();
  if (!s) return;
  signal(s, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, s);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  raise(s);
}

}  // namespace ls
