// A process command in a child of its own (see child.h).
#include "manager/child.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace ls::manager {

namespace {

// Reads both pipes to their end (alternating, so that neither fills while we wait on
// the other).
void drain(int out_fd, int err_fd, std::string& out, std::string& err) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  std::string* into[2] = {&out, &err};
  int open_fds = 2;
  char buf[8192];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        into[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
}

// The last "livesplice: ..." line a failed command wrote on stderr, without the prefix.
std::string last_error_line(const std::string& err) {
  std::istringstream in(err);
  std::string line, last;
  while (std::getline(in, line))
    if (line.starts_with("livesplice: ")) last = line;
  for (const char* prefix : {"livesplice: error: ", "livesplice: "})
    if (last.starts_with(prefix)) return last.substr(std::strlen(prefix));
  return last;
}

[[noreturn]] void child_main(Context ctx, int out_fd, int err_fd, const std::function<Exit(Context&)>& command) {
  ::dup2(out_fd, STDOUT_FILENO);
  ::dup2(err_fd, STDERR_FILENO);
  ::close(out_fd);
  ::close(err_fd);
  ctx.json = true;
  ctx.quiet = true;
  Exit code = Exit::ToolError;
  try {
    code = command(ctx);
  } catch (const Error& e) {
    ctx.report(fmt::format("error: {}", e.what()));
    code = e.code();
  } catch (const std::exception& e) {
    ctx.report(fmt::format("internal error: {}", e.what()));
  }
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(static_cast<int>(code));
}

// The engine's refusals, by the phrase that says what they are (first match wins).
struct KindRow {
  const char* name;
  const char* text;
  const char* phrase;
};
constexpr KindRow kKinds[] = {
    {"busy", "busy thread", "gave up after"},                  // process: a thread stayed in a replaced function
    {"busy", "busy task", "on each of"},                       // kernel: a task stayed in one (the core's words)
    {"seccomp", "refused by its seccomp filter", "seccomp"},
    {"mismatch", "run code differs", "run-pre matching failed"},
    {"mismatch", "another build", "build-id"},
    {"mismatch", "another kernel", "is for kernel"},
    {"not-running", "not running", "has exited"},
    {"not-running", "not running", "does not exist"},
    {"permission", "no permission", "ermission"},
    {"permission", "no permission", "not permitted"},
};

}  // namespace

FailureKind classify_failure(const std::string& error) {
  for (const KindRow& k : kKinds)
    if (error.find(k.phrase) != std::string::npos) return {k.name, k.text};
  return {"other", "failed"};
}

Outcome run_in_child(Context& ctx, const std::function<Exit(Context&)>& command) {
  Outcome o;
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return {Exit::ToolError, fmt::format("cannot make a pipe: {}", std::strerror(errno)), {}};
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return {Exit::ToolError, fmt::format("cannot make a pipe: {}", std::strerror(errno)), {}};
  }
  std::fflush(stdout);   // or the child would print what we have buffered again
  std::fflush(stderr);
  pid_t child = ::fork();
  if (child < 0) {
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
    return {Exit::ToolError, fmt::format("cannot fork: {}", std::strerror(errno)), {}};
  }
  if (child == 0) {
    ::close(out[0]);
    ::close(err[0]);
    child_main(ctx, out[1], err[1], command);
  }
  ::close(out[1]);
  ::close(err[1]);
  std::string stdout_text, stderr_text;
  drain(out[0], err[0], stdout_text, stderr_text);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (ctx.verbose && !stderr_text.empty()) fmt::print(stderr, "{}", stderr_text);
  o.result = nlohmann::json::parse(stdout_text, nullptr, false);
  if (o.result.is_discarded()) o.result = nullptr;
  if (WIFSIGNALED(status)) {
    o.code = Exit::ToolError;
    o.error = fmt::format("the command was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
    o.kind = classify_failure(o.error);
    return o;
  }
  o.code = static_cast<Exit>(WEXITSTATUS(status));
  if (o.ok()) return o;
  if (o.result.is_object() && o.result.contains("error") && o.result["error"].is_string())
    o.error = o.result["error"].get<std::string>();
  else
    o.error = last_error_line(stderr_text);
  if (o.error.empty()) o.error = fmt::format("exit {} without a message", WEXITSTATUS(status));
  o.kind = classify_failure(o.error);
  return o;
}

}  // namespace ls::manager
