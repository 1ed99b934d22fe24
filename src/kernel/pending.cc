// Pending kernel updates: the waiter process and undo of a pending update (see pending.h).
#include "kernel/pending.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

#include <nlohmann/json.hpp>

#include "livesplice.h"   // kernel/uapi: LS_K_PENDING_*

namespace ls::kernel {

namespace {

Exit refused(Context& ctx, const char* what, const char* done_key, const std::string& id, const Status& s) {
  return ctx.failed(fmt::format("{} {}", what, id.substr(0, 8)), s, done_key, id);
}

// The waiter, in its own process: block until `module` loads, then apply the update
// (held open as `fd`) while the core holds the load. Returns the process's exit code.
int run_waiter(KernelApplyOptions opt, int fd, const std::string& id, const std::string& module) {
  Context ctx;
  ctx.quiet = true;
  auto dev = CoreDevice::open();
  if (!dev) return 1;
  if (!dev->wait(id).ok()) return 0;   // cancelled: nothing to do
  std::string failure;
  opt.update = fmt::format("/proc/self/fd/{}", fd);
  opt.core.clear();
  opt.coming = module;
  opt.failure = &failure;
  Exit rc = Exit::ToolError;
  try {
    update::Contents u = update::Contents::load(opt.update);
    if (u.id != id)
      failure = fmt::format("the update's file changed since apply (id {} now)", u.id.substr(0, 8));
    else
      rc = run_kernel_apply(ctx, opt);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  // After a refused LS_K_APPLY the core knows already; else this fails the module's
  // load with the reason (and closing the device would too, with a vaguer one).
  if (rc != Exit::Ok) (void)dev->fail(id, failure.empty() ? "the apply failed" : failure);
  return static_cast<int>(rc);
}

// Detach from the caller: own session, no terminal, no inherited output, signals that
// a shell or a terminal sends ignored (SIGKILL still ends it; the core notices).
void become_daemon() {
  setsid();
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2})
    signal(sig, SIG_IGN);
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2) ::close(null);
  }
  if (chdir("/") != 0) { /* nothing depends on the directory */ }
}

}  // namespace

Exit pend_kernel_apply(Context& ctx, const KernelApplyOptions& opt, const update::Contents& u, CoreDevice& dev,
                       const std::set<std::string>& modules) {
  const std::string& id = u.id;
  if (modules.size() > 1) {
    std::string names;
    for (const auto& m : modules) names += (names.empty() ? "" : ", ") + m;
    return refused(ctx, "apply", "applied", id,
                   error("modules {} are not loaded: an update can wait for one module only", names));
  }
  const std::string& module = *modules.begin();
  int fd = ::open(opt.update.c_str(), O_RDONLY);   // inherited by the waiter: its copy of the update
  if (fd < 0) return refused(ctx, "apply", "applied", id, error("{}: {}", opt.update, strerror(errno)));
  if (Status s = dev.pend(id, module); !s.ok()) {
    ::close(fd);
    return refused(ctx, "apply", "applied", id, s);
  }
  fflush(stdout);
  fflush(stderr);
  pid_t child = fork();
  if (child == 0) {
    become_daemon();
    if (fork() != 0) _exit(0);   // the waiter is a grandchild: no zombie for the caller
    // Nothing of the caller's but the update stays open: a lock the caller holds (the
    // update manager's store) must not be held until some module loads.
    if (fd != 3) {
      ::dup2(fd, 3);
      fd = 3;
    }
    ::close_range(4, ~0U, 0);
    _exit(run_waiter(opt, fd, id, module));
  }
  ::close(fd);
  if (child > 0) waitpid(child, nullptr, 0);
  // The update counts as pending once its waiter is attached.
  int waiter = 0;
  for (int i = 0; child > 0 && i < 500 && waiter == 0; ++i) {
    auto pending = dev.pending();
    if (!pending) break;
    for (const Pending& p : *pending)
      if (p.id == id) waiter = p.waiter_pid;
    if (waiter == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (waiter == 0) {
    (void)dev.cancel(id);
    return refused(ctx, "apply", "applied", id,
                   error("no process could be left to wait for module {}; the update is not pending", module));
  }
  if (ctx.json) {
    fmt::print("{}\n", nlohmann::json{{"applied", false},
                                      {"pending", true},
                                      {"id", id},
                                      {"kernel", u.kernel_release},
                                      {"waits_for", module},
                                      {"waiter_pid", waiter}}
                           .dump(2));
  } else {
    fmt::print("pending {}: module {} is not loaded; the update is applied when it loads, before its code runs "
               "(waiting process {})\n",
               id.substr(0, 8), module, waiter);
  }
  return Exit::Ok;
}

std::optional<Exit> cancel_kernel_pending(Context& ctx, CoreDevice& dev, const std::string& prefix, bool none_applied) {
  auto pending = dev.pending();
  if (!pending) return refused(ctx, "undo", "undone", prefix, pending.status());
  const Pending* meant = nullptr;
  for (const Pending& p : *pending) {
    if (prefix.empty() ? !none_applied : !p.id.starts_with(prefix)) continue;
    if (meant && !prefix.empty())
      return refused(ctx, "undo", "undone", prefix, error("ambiguous: {} and {} both start with it", meant->id, p.id));
    meant = &p;   // without a prefix: the newest (listed last)
  }
  if (!meant) return std::nullopt;
  if (Status s = dev.cancel(meant->id); !s.ok()) return refused(ctx, "undo", "undone", meant->id, s);
  if (ctx.json)
    fmt::print("{}\n", nlohmann::json{{"undone", true}, {"id", meant->id}, {"pending", true}, {"waited_for", meant->module}}
                           .dump(2));
  else
    fmt::print("cancelled {}: it was pending until module {} loads\n", meant->id.substr(0, 8), meant->module);
  return Exit::Ok;
}

}  // namespace ls::kernel
