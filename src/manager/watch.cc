// The watch daemon's event loop, its holders and its marker (see watch.h).
#include "manager/watch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/fanotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "manager/fit.h"
#include "manager/hold.h"
#include "manager/store.h"
#include "process/ledger.h"

namespace ls::manager {

namespace {

using Clock = std::chrono::steady_clock;

// A marked file: the path it was marked by, and whether as a program (exec) or library.
using Marks = std::set<std::pair<std::string, bool>>;

struct Holder {
  pid_t tid = 0;                   // the thread it holds
  pid_t tgid = 0;
  int event_fd = -1;               // kept open until the holder answered (see handle_event)
  HoldRecord* record = nullptr;    // shared with the holder: what a rescuer needs
};

// A process whose apply failed while it was held: tried again on the running process.
struct Retry {
  uint64_t start_time = 0;
  Clock::time_point due;
  std::chrono::seconds delay{1};
  int left = 5;
};

// The daemon's state, passed to everything it does (no globals).
struct Watch {
  Context& ctx;
  const WatchOptions& opt;
  std::string root;
  int fan = -1;
  int signals = -1;
  Marks marks;
  std::map<pid_t, Holder> holders;           // by holder PID
  pid_t marker = 0;
  int marker_out = -1;                       // its list of marks, read until it ends
  std::string marker_text;
  Clock::time_point next_mark;
  struct timespec store_mtime {};
  std::map<pid_t, Retry> retries;            // by process PID
  std::map<pid_t, pid_t> retriers;           // retrier PID → process PID
  std::set<pid_t> rescuers;                  // children mending what a killed holder left
  bool stopping = false;
};

std::string process_name(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/comm", pid));
  std::string comm;
  std::getline(in, comm);
  return fmt::format("process {} ({})", pid, printable(comm));
}

pid_t parent_of(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  char state;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

pid_t tgid_of(pid_t tid) {
  std::ifstream in(fmt::format("/proc/{}/status", tid));
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("Tgid:")) return std::atoi(line.c_str() + 5);
  return 0;
}

// Ours: this daemon's children and theirs (holders, the applies they run, the marker).
bool ours(pid_t tgid) {
  for (int depth = 0; tgid > 1 && depth < 64; ++depth) {
    if (tgid == ::getpid()) return true;
    tgid = parent_of(tgid);
  }
  return false;
}

// The user pc of a thread waiting in a system call (/proc/PID/task/TID/syscall: the
// number, six arguments, sp, pc); null when it cannot be read. The opener of a watched
// file waits for our answer, but it may not be asleep yet when its event is read (the
// file then says "running"): read again until it is.
TargetAddr syscall_pc(pid_t tgid, pid_t tid) {
  for (int attempt = 0; attempt < 2000; ++attempt) {
    std::ifstream in(fmt::format("/proc/{}/task/{}/syscall", tgid, tid));
    if (!in) return TargetAddr();
    std::vector<std::string> f;
    for (std::string w; in >> w;) f.push_back(w);
    if (f.size() >= 9) return TargetAddr(std::stoull(f[8], nullptr, 16));
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return TargetAddr();
}

void answer(int fan, int event_fd, uint32_t verdict) {
  fanotify_response r{event_fd, verdict};
  (void)!::write(fan, &r, sizeof r);
}

std::string fd_path(int fd) {
  std::error_code ec;
  return std::filesystem::read_symlink(fmt::format("/proc/self/fd/{}", fd), ec).string();
}

// --- the holder (a child per held thread) ---------------------------------------------

[[noreturn]] void holder_main(Watch& w, int event_fd, pid_t tid, HoldKind kind, const std::string& file,
                              HoldRecord* record) {
  const auto start = Clock::now();
  ::prctl(PR_SET_NAME, "watch-holder");   // its role, for ps
  auto hold = Hold::seize(tid, kind, record);
  answer(w.fan, event_fd, FAN_ALLOW);   // never refused: we only hold
  ::close(event_fd);
  ::close(w.fan);
  if (!hold) {
    w.ctx.report(fmt::format("watch: not held: {}", hold.status().message()));
    std::fflush(stdout);
    ::_exit(0);
  }
  const std::string what = kind == HoldKind::Exec ? "execve of " + file : "ld.so mapping " + file;
  std::atomic<bool> never{false};
  auto loaded = hold->run_to_loaded(never, std::chrono::milliseconds(w.opt.hold_limit_ms));
  if (!loaded || !*loaded) {
    if (!loaded) w.ctx.report(fmt::format("watch: {}: not held: {}", what, loaded.status().message()));
    std::fflush(stdout);
    ::_exit(0);
  }
  const pid_t pid = hold->pid();
  const std::string name = process_name(pid);
  Exit rc = Exit::Ok;
  if (Status s = hold->park(); !s.ok()) {
    w.ctx.report(fmt::format("watch: {}: cannot park it, released unpatched: {}", name, s.message()));
    rc = Exit::ToolError;
  } else {
    fmt::print("holding {} at its {}\n", name, what);
    try {
      Store store = Store::open(w.ctx, w.root, true);
      ManagerOptions once = w.opt.manager;
      once.rounds = 0;   // not while it is held: later, on the running process (schedule_retry)
      rc = converge_process(w.ctx, store, once, pid);
    } catch (const Error& e) {
      w.ctx.report(fmt::format("watch: {}: {}", name, e.what()));
      rc = e.code();
    }
    if (Status s = hold->release(); !s.ok()) w.ctx.report(fmt::format("watch: {}: {}", name, s.message()));
    fmt::print("released {} after {:.1f} ms\n", name,
               std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(static_cast<int>(rc));
}

// A child of the event loop: what it must not keep of the loop's.
pid_t fork_child(Watch& w) {
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t child = ::fork();
  if (child == 0) {
    // Its log may outlive the daemon's reader (a killed daemon's terminal or pipe): a
    // holder killed by SIGPIPE would leave its thread parked with no one to mend it.
    ::signal(SIGPIPE, SIG_IGN);
    ::close(w.signals);
    if (w.marker_out >= 0) ::close(w.marker_out);
  }
  return child;
}

// --- marks ------------------------------------------------------------------------------

// Where a program or library of the system is, for a target named only by its file name.
const char* const kProgramDirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"};
const char* const kLibraryDirs[] = {"/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
                                    "/usr/lib", "/lib"};

// The files the stored updates are for, as they are on disk now: each target's own path
// when absolute, the system's directories for its name, and the paths running processes
// map it from — each only when the file there is that build.
Marks wanted_marks(Context& ctx, const Store& store) {
  Marks wanted;
  std::vector<RunningProcess> processes;
  bool scanned = false;
  for (const auto& u : store.updates()) {
    if (u.manifest().kernel) continue;
    if (!scanned) processes = scan_processes(ctx), scanned = true;
    for (const auto& t : u.manifest().targets) {
      if (t.kind != "executable" && t.kind != "shared-library") continue;
      std::set<std::string> paths;
      if (t.path.starts_with("/")) paths.insert(t.path);
      if (!t.build_id.empty() && t.name.find('/') == std::string::npos) {   // by build-id only
        if (t.kind == "executable")
          for (const char* d : kProgramDirs) paths.insert(std::string(d) + "/" + t.name);
        else
          for (const char* d : kLibraryDirs) paths.insert(std::string(d) + "/" + t.name);
      }
      for (const auto& p : processes)
        for (const auto& f : fits(u.manifest(), p))
          if (f.target == t.name && !f.binary->replaced) paths.insert(f.binary->path);
      for (const auto& path : paths) {
        if (!std::filesystem::is_regular_file(path)) continue;
        const bool same = t.build_id.empty() ? t.original_build_id.empty() &&
                                                   std::filesystem::path(path).filename() == t.name
                                             : build_id_of_file(path) == t.build_id;
        if (same) wanted.emplace(path, t.kind == "executable");
      }
    }
  }
  return wanted;
}

[[noreturn]] void marker_main(Watch& w, int out) {
  int rc = 0;
  try {
    Store store = Store::open(w.ctx, w.root, false);
    Marks wanted = wanted_marks(w.ctx, store);
    for (const auto& [path, exec] : w.marks)
      if (!wanted.count({path, exec}))
        ::fanotify_mark(w.fan, FAN_MARK_REMOVE, exec ? FAN_OPEN_EXEC_PERM : FAN_OPEN_PERM, AT_FDCWD, path.c_str());
    std::string text;
    for (const auto& [path, exec] : wanted) {
      if (::fanotify_mark(w.fan, FAN_MARK_ADD, exec ? FAN_OPEN_EXEC_PERM : FAN_OPEN_PERM, AT_FDCWD, path.c_str()) != 0) {
        w.ctx.report(fmt::format("watch: cannot watch {}: {}", path, std::strerror(errno)));
        continue;
      }
      if (!w.marks.count({path, exec})) fmt::print("watching {} ({})\n", path, exec ? "program" : "library");
      text += fmt::format("{} {}\n", exec ? 'E' : 'L', path);
    }
    (void)!::write(out, text.data(), text.size());
  } catch (const Error& e) {
    w.ctx.report(fmt::format("watch: the store: {}", e.what()));
    rc = 1;
  }
  std::fflush(stdout);
  ::_exit(rc);
}

void start_marker(Watch& w) {
  if (w.marker != 0 || w.stopping) return;
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return;
  pid_t child = fork_child(w);
  if (child == 0) {
    ::close(pipefd[0]);
    marker_main(w, pipefd[1]);
  }
  ::close(pipefd[1]);
  if (child < 0) {
    ::close(pipefd[0]);
    return;
  }
  w.marker = child;
  w.marker_out = pipefd[0];
  w.marker_text.clear();
  w.next_mark = Clock::now() + std::chrono::seconds(w.opt.rescan_s);
}

void marker_done(Watch& w, int status) {
  char buf[4096];
  for (ssize_t n; (n = ::read(w.marker_out, buf, sizeof buf)) > 0;) w.marker_text.append(buf, static_cast<size_t>(n));
  ::close(w.marker_out);
  w.marker_out = -1;
  w.marker = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return;   // the marks as they were
  Marks now;
  std::istringstream in(w.marker_text);
  for (std::string line; std::getline(in, line);)
    if (line.size() > 2) now.emplace(line.substr(2), line[0] == 'E');
  w.marks = std::move(now);
}

bool store_changed(Watch& w) {
  struct stat st {};
  if (::stat((w.root + "/updates").c_str(), &st) != 0) return false;
  bool changed = st.st_mtim.tv_sec != w.store_mtime.tv_sec || st.st_mtim.tv_nsec != w.store_mtime.tv_nsec;
  w.store_mtime = st.st_mtim;
  return changed;
}

// --- events -----------------------------------------------------------------------------

bool held(const Watch& w, pid_t tid, pid_t tgid) {
  for (const auto& [holder, h] : w.holders)
    if (h.tid == tid || h.tgid == tgid) return true;
  return false;
}

void handle_event(Watch& w, const fanotify_event_metadata& md) {
  const pid_t tid = md.pid;
  const pid_t tgid = tgid_of(tid);
  std::optional<HoldKind> kind;
  if (!w.stopping && tgid != 0 && !held(w, tid, tgid) && !ours(tgid)) {
    if (md.mask & FAN_OPEN_EXEC_PERM) kind = HoldKind::Exec;
    else if (in_loader(tgid, syscall_pc(tgid, tid))) kind = HoldKind::Load;
  }
w.ctx.note(fmt::format("watch: open of {} by thread {} of process {}: {}", fd_path(md.fd), tid, tgid,
                         kind ? "held" : "allowed"));
  if (!kind) {
    answer(w.fan, md.fd, FAN_ALLOW);
    ::close(md.fd);
    return;
  }
  const std::string file = fd_path(md.fd);
  void* shared = ::mmap(nullptr, sizeof(HoldRecord), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  HoldRecord* record = shared == MAP_FAILED ? nullptr : new (shared) HoldRecord;
  pid_t child = fork_child(w);
  if (child == 0) holder_main(w, md.fd, tid, *kind, file, record);
  if (child < 0 && record) ::munmap(record, sizeof(HoldRecord));
  if (child < 0) {
    w.ctx.report(fmt::format("watch: cannot fork a holder for thread {}: {}", tid, std::strerror(errno)));
    answer(w.fan, md.fd, FAN_ALLOW);
    ::close(md.fd);
    return;
  }
  // The event's fd stays open here until the holder has answered: a number closed now
  // could be given to the next event, and an answer names its event by that number.
  w.holders[child] = {tid, tgid, md.fd, record};
}

// A holder has ended. Killed, it may have left its event unanswered (the opener waits
// for ever) and its thread with our breakpoint set or parked (hold.h, HoldRecord): the
// event is allowed (a second answer is refused harmlessly) and a rescuer mends the
// thread — a child, as it may wait for an apply the holder started to finish.
void holder_done(Watch& w, const Holder& h, int status) {
  if (WIFSIGNALED(status)) {
    if (w.fan >= 0) answer(w.fan, h.event_fd, FAN_ALLOW);   // closed: the kernel allowed it
    fmt::print("holder of {} killed by signal {}: mending what it held\n", process_name(h.tgid), WTERMSIG(status));
    pid_t child = h.record ? fork_child(w) : -1;
    if (child == 0) {
      ::prctl(PR_SET_NAME, "watch-rescuer");
      // After any apply the holder started (it holds the process's lock to the end):
      // that apply may lend the parked thread between its attempts.
      std::optional<proc::LedgerLock> after_apply;
      if (auto key = proc::process_key(h.tgid))
        if (auto lock = proc::LedgerLock::take(*key, true, 120)) after_apply.emplace(std::move(*lock));
      auto unparked = rescue(*h.record, std::chrono::seconds(120));
      if (!unparked) w.ctx.report(fmt::format("watch: {}", unparked.status().message()));
      else fmt::print("mended {}: {}\n", process_name(h.tgid), *unparked ? "unparked" : "its breakpoint cleared");
      std::fflush(stdout);
      ::_exit(unparked ? 0 : 1);
    }
    if (child > 0) w.rescuers.insert(child);
  }
  ::close(h.event_fd);
  if (h.record) ::munmap(h.record, sizeof(HoldRecord));
}

void read_events(Watch& w) {
  alignas(fanotify_event_metadata) char buf[8192];
  ssize_t n = ::read(w.fan, buf, sizeof buf);
  if (n <= 0) return;
  auto* md = reinterpret_cast<fanotify_event_metadata*>(buf);
  for (; FAN_EVENT_OK(md, n); md = FAN_EVENT_NEXT(md, n)) {
    if (md->vers != FANOTIFY_METADATA_VERSION || md->fd < 0) continue;
    if (md->mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM)) handle_event(w, *md);
    else ::close(md->fd);
  }
}

// --- retries ----------------------------------------------------------------------------

void schedule_retry(Watch& w, pid_t pid) {
  auto key = proc::process_key(pid);
  if (!key) return;
  auto it = w.retries.find(pid);
  if (it == w.retries.end() || it->second.start_time != key->start_time) {
    w.retries[pid] = Retry{key->start_time, Clock::now() + std::chrono::seconds(1)};
    return;
  }
  Retry& r = it->second;
  if (--r.left <= 0) {
    fmt::print("giving up on {} (see livesplice status)\n", process_name(pid));
    w.retries.erase(it);
    return;
  }
  r.delay *= 4;
  r.due = Clock::now() + r.delay;
}

void run_due_retries(Watch& w) {
  for (auto& [pid, r] : w.retries) {
    if (r.due > Clock::now() || w.stopping) continue;
    bool running = false;
    for (const auto& [child, p] : w.retriers) running |= p == pid;
    if (running) continue;
    r.due = Clock::time_point::max();   // until the retrier reports
    pid_t child = fork_child(w);
    if (child == 0) {
      ::close(w.fan);
      Exit rc = Exit::ToolError;
      try {
        Store store = Store::open(w.ctx, w.root, true);
        rc = converge_process(w.ctx, store, w.opt.manager, pid);
      } catch (const Error& e) {
        w.ctx.report(fmt::format("watch: {}", e.what()));
      }
      std::fflush(stdout);
      ::_exit(static_cast<int>(rc));
    }
    if (child > 0) w.retriers[child] = pid;
  }
}

// --- the loop ---------------------------------------------------------------------------

void reap(Watch& w) {
  int status = 0;
  for (pid_t child; (child = ::waitpid(-1, &status, WNOHANG)) > 0;) {
    if (child == w.marker) {
      marker_done(w, status);
    } else if (auto h = w.holders.find(child); h != w.holders.end()) {
      holder_done(w, h->second, status);
      const bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
      if (failed && ::kill(h->second.tgid, 0) == 0) schedule_retry(w, h->second.tgid);
      w.holders.erase(h);
    } else if (auto r = w.retriers.find(child); r != w.retriers.end()) {
      const pid_t pid = r->second;
      w.retriers.erase(r);
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) w.retries.erase(pid);
      else if (::kill(pid, 0) == 0) schedule_retry(w, pid);
      else w.retries.erase(pid);
    } else {
      w.rescuers.erase(child);
    }
  }
}

void on_signals(Watch& w) {
  signalfd_siginfo si;
  while (::read(w.signals, &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGCHLD) reap(w);
    else w.stopping = true;
  }
  reap(w);   // signals of children ending together merge into one
}

Status open_kernel_interfaces(Watch& w) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&set, s);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0 || (w.signals = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
    return error("cannot take signals through a signalfd: {}", std::strerror(errno));
  // Content class: permission events. The thread's id, not its process's: the holder
  // seizes the very thread that opens.
  w.fan = ::fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID | FAN_UNLIMITED_QUEUE,
                          O_RDONLY | O_CLOEXEC | O_LARGEFILE);
  if (w.fan < 0)
    return error("cannot open a fanotify group for permission events: {} (watch needs CAP_SYS_ADMIN and a kernel "
                 "with fanotify permission events)", std::strerror(errno));
  return {};
}

}  // namespace

Exit run_watch(Context& ctx, const WatchOptions& opt) {
  Watch w{ctx, opt, store_root(opt.manager.root)};
  std::setvbuf(stdout, nullptr, _IOLBF, 0);   // a journal reads it line by line
  if (Status s = open_kernel_interfaces(w); !s.ok()) {
    ctx.report(fmt::format("watch: {}", s.message()));
    return s.code();
  }
  { Store created = Store::open(ctx, w.root, false); }   // says now, not in a child, what is wrong with it
  store_changed(w);
  start_marker(w);
  fmt::print("watching the store {}\n", w.root);
  while (!w.stopping) {
    pollfd fds[3] = {{w.fan, POLLIN, 0}, {w.signals, POLLIN, 0}, {w.marker_out, POLLIN, 0}};
    if (::poll(fds, w.marker_out >= 0 ? 3 : 2, 500) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) read_events(w);
    if (fds[1].revents & POLLIN) on_signals(w);
    if (w.marker_out >= 0 && (fds[2].revents & POLLIN)) {
      char buf[4096];
      ssize_t n = ::read(w.marker_out, buf, sizeof buf);
      if (n > 0) w.marker_text.append(buf, static_cast<size_t>(n));
    }
    if (store_changed(w) || Clock::now() >= w.next_mark) start_marker(w);
    run_due_retries(w);
  }
  // The group closed: the kernel answers what is pending (allow) and drops the marks
  // once the holders' copies are closed too; the holders finish and release.
  ::close(w.fan);
  w.fan = -1;
  fmt::print("stopping: waiting for {} held process(es)\n", w.holders.size());
  while (!w.holders.empty() || !w.retriers.empty() || !w.rescuers.empty() || w.marker != 0) {
    int status = 0;
    pid_t child = ::waitpid(-1, &status, 0);
    if (child < 0 && errno == EINTR) continue;
    if (child < 0) break;
    if (child == w.marker) marker_done(w, status);
    if (auto h = w.holders.find(child); h != w.holders.end()) {
      holder_done(w, h->second, status);
      w.holders.erase(h);
    }
    w.retriers.erase(child);
    w.rescuers.erase(child);
  }
  fmt::print("stopped\n");
  return Exit::Ok;
}

}  // namespace ls::manager
