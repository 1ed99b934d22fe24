#include "process/guardian.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace ls::proc {

namespace {

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

bool get_u32(const std::string& in, size_t& at, uint32_t& v) {
  if (at + 4 > in.size()) return false;
  std::memcpy(&v, in.data() + at, 4);
  at += 4;
  return true;
}

}  // namespace

Result<std::string> run_to_completion(const std::function<Status(std::string& payload)>& work, Paging paging) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return error("pipe: {}", std::strerror(errno));
  pid_t child = fork();
  if (child < 0) {
    close(fds[0]);
    close(fds[1]);
    return error("fork: {}", std::strerror(errno));
  }
  if (child == 0) {
    close(fds[0]);
    setsid();
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT, SIGTSTP, SIGTTOU, SIGTTIN}) signal(sig, SIG_IGN);
    // Without the privilege to lock (RLIMIT_MEMLOCK) the work still runs, only with a
    // longer pause; the lock ends with the child.
    if (paging == Paging::Locked) (void)mlockall(MCL_CURRENT | MCL_FUTURE);
    std::string payload;
    Status s = work(payload);
    std::string report;
    put_u32(report, s.ok() ? 0 : 1);
    put_u32(report, static_cast<uint32_t>(s.code()));
    put_u32(report, static_cast<uint32_t>(s.message().size()));
    report += s.message();
    put_u32(report, static_cast<uint32_t>(payload.size()));
    report += payload;
    size_t done = 0;
    while (done < report.size()) {
      ssize_t n = write(fds[1], report.data() + done, report.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;   // the parent is gone: nobody to tell
      done += n;
    }
    _exit(0);
  }
  close(fds[1]);
  std::string report;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    report.append(buf, n);
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  size_t at = 0;
  uint32_t failed = 0, code = 0, len = 0;
  if (!get_u32(report, at, failed) || !get_u32(report, at, code) || !get_u32(report, at, len) ||
      at + len > report.size())
    return error("the helper process died without reporting (status {:#x})", status);
  std::string message = report.substr(at, len);
  at += len;
  if (failed) return Status::error(message, static_cast<Exit>(code));
  if (!get_u32(report, at, len) || at + len > report.size()) return error("the helper process reported garbage");
  return report.substr(at, len);
}

void kill_point(pid_t tool, std::string_view phase) {
  const char* want = std::getenv("LIVESPLICE_KILL_AT");
  if (!want) return;
  std::string_view w(want);
  bool guardian_too = w.ends_with("+guardian");
  if (guardian_too) w.remove_suffix(std::string_view("+guardian").size());
  if (w != phase) return;
  if (getpid() == tool) raise(SIGKILL);
  if (getppid() != tool) return;   // the tool is gone already: nothing of ours to kill
  kill(tool, SIGKILL);
  if (guardian_too) raise(SIGKILL);
  // Dead before the guardian goes on, as if killed from outside before this point: the
  // guardian's own checks (getppid) must see it.
  for (int i = 0; i < 1000 && getppid() == tool; ++i) usleep(1000);
}

void signal_point(pid_t pid, pid_t tid, std::string_view phase) {
  const char* want = std::getenv("LIVESPLICE_SIGNAL_AT");
  if (!want) return;
  std::string_view w(want);
  const size_t colon = w.rfind(':');
  if (colon == std::string_view::npos || w.substr(0, colon) != phase) return;
  syscall(SYS_tgkill, pid, tid, std::atoi(want + colon + 1));
}

}  // namespace ls::proc
