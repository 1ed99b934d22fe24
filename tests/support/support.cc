#include "support/support.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <gtest/gtest.h>

namespace fs = std::filesystem;

namespace lstest {

namespace {

using Clock = std::chrono::steady_clock;

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t'\"$\\") == std::string::npos;
    s += plain ? a : quote(a);
  }
  return s;
}

}  // namespace

TempDir::TempDir() {
  const char* tmp = getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/livesplice-test.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error(std::string("mkdtemp: ") + strerror(errno));
  path_ = fs::canonical(buf.data()).string();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& content, bool executable) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (executable)
    fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
}

std::string read_file(const std::string& path) {
  // A /proc file of a thread that exits under us fails with ESRCH, and libstdc++'s
  // filebuf throws that through istreambuf_iterator: "cannot be read" here too.
  std::ifstream in(path, std::ios::binary);
  try {
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::ios_base::failure&) {
    return "";
  }
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string RunResult::describe() const {
  std::ostringstream s;
  s << "$ " << command << "\n";
  if (timed_out) s << "(killed: still running at the deadline)\n";
  s << "exit status " << status << "\n";
  if (!out.empty()) s << "--- stdout:\n" << out << (out.back() == '\n' ? "" : "\n");
  if (!err.empty()) s << "--- stderr:\n" << err << (err.back() == '\n' ? "" : "\n");
  return s.str();
}

nlohmann::json RunResult::json() const {
  try {
    return nlohmann::json::parse(out);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("stdout is not JSON (") + e.what() + "):\n" + describe());
  }
}

RunResult run(const std::vector<std::string>& argv, const RunOptions& opt) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  RunResult r;
  r.command = join(argv);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + strerror(errno));
  if (pid == 0) {
    // Its own process group, so that a kill at the deadline reaches it alone.
    setpgid(0, 0);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    if (!opt.cwd.empty() && chdir(opt.cwd.c_str()) != 0) _exit(127);
    for (const auto& [k, v] : opt.env) setenv(k.c_str(), v.c_str(), 1);
    execvp(args[0], args.data());
    dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  const bool bounded = opt.timeout > Millis::zero();
  auto deadline = Clock::now() + opt.timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    int wait_ms = -1;
    if (bounded) {
      auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
      if (left <= 0) {
        r.timed_out = true;
        kill(pid, SIGKILL);
        break;
      }
      wait_ms = static_cast<int>(left);
    }
    int n = poll(fds, 2, wait_ms);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2 && n > 0; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

RunResult run(const std::vector<std::string>& argv, const std::string& cwd,
              const std::map<std::string, std::string>& env) {
  RunOptions o;
  o.cwd = cwd;
  o.env = env;
  return run(argv, o);
}

RunResult sh(const std::string& command, const std::string& cwd) { return run({"/bin/sh", "-c", command}, cwd); }

std::string sh_stdout(const std::string& command) {
  RunResult r = sh(command);
  if (r.status != 0) throw std::runtime_error("command failed: " + r.describe());
  return r.out;
}

std::string compile_c(const TempDir& dir, const std::string& name, const std::string& source,
                      const std::string& flags) {
  write_file(dir / (name + ".c"), source);
  sh_stdout("gcc -c " + flags + " -o " + quote(dir / (name + ".o")) + " " + quote(dir / (name + ".c")));
  return dir / (name + ".o");
}

void require_tools(const std::vector<std::string>& tools) {
  for (const auto& t : tools) {
    RunResult r = sh("command -v " + t);
    if (r.status != 0) FAIL() << "required tool '" << t << "' is not installed; these tests need it (never skipped)";
  }
}

std::string livesplice() { return LIVESPLICE_BIN; }
std::string livesplice_cc() { return LIVESPLICE_CC_BIN; }

}  // namespace lstest
