#include "process/regions.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <tuple>

#include "process/guardian.h"
#include "process/parked.h"
#include "process/ptrace.h"
#include "process/scheduling.h"
#include "process/seccomp.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 1U
#endif

namespace ls::proc {

namespace {

constexpr uint64_t kPage = 4096;
uint64_t page_up(uint64_t n) { return (n + kPage - 1) & ~(kPage - 1); }

// How often a thread wakes: its context switches (voluntary and involuntary) over its
// life so far, per second; -1 if it is gone.
double wakeup_rate(pid_t pid, pid_t tid, double uptime_s, double ticks_per_s) {
  std::ifstream in(fmt::format("/proc/{}/task/{}/status", pid, tid));
  if (!in) return -1;
  int64_t switches = 0;
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:"))
      switches += std::atoll(line.c_str() + line.find(':') + 1);
  int64_t started = stat_field(pid, tid, 22);   // starttime, in clock ticks since boot
  double age_s = started < 0 ? 0 : uptime_s - static_cast<double>(started) / ticks_per_s;
  return static_cast<double>(switches) / std::max(age_s, 0.01);
}

// The thread to borrow: first one whose own call borrowing would not end early (above),
// then the one that wakes least often (a thread serving requests wakes for each; one
// parked in pause() or a long wait hardly ever), asleep now if one is; the lowest TID
// among equals. One look, no waiting: the rate is over each thread's
// life, which for the long-running programs livesplice updates says what it does.
// Whether borrowing `tid` would end a call of its own early. A thread asleep in a system
// call is interrupted to be borrowed; the calls below come back exactly as they were
// (the kernel restarts them, with the time that was left), but epoll_wait,
// sigtimedwait, semop, a read, recv or accept under SO_RCVTIMEO and the others of
// signal(7) would return EINTR to the program.
// The system call thread `tid` is blocked in, or -1 (running, or not in one).
long blocked_in(pid_t pid, pid_t tid) {
  std::ifstream in(fmt::format("/proc/{}/task/{}/syscall", pid, tid));
  std::string first;
  if (!(in >> first) || first == "running") return -1;
  return std::strtol(first.c_str(), nullptr, 10);
}

bool borrowing_disturbs(long nr) {
  if (nr < 0) return false;   // not in a system call
  return !call_restarts(nr);
}

}  // namespace

bool call_restarts(long nr) {
  switch (nr) {
    case SYS_nanosleep: case SYS_clock_nanosleep: case SYS_poll: case SYS_ppoll: case SYS_select:
    case SYS_pselect6: case SYS_pause: case SYS_rt_sigsuspend: case SYS_wait4: case SYS_waitid: case SYS_futex:
    // A sleep the kernel restarted after an earlier interruption (ours, when the thread
    // was borrowed: nanosleep, poll and futex waits come back as restart_syscall with
    // the time left); interrupted again, it is restarted again.
    case SYS_restart_syscall:
      return true;
    default:
      return false;
  }
}

pid_t quietest_thread(pid_t pid) {
  std::vector<pid_t> tids;
  if (DIR* d = opendir(fmt::format("/proc/{}/task", pid).c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') tids.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
    closedir(d);
  }
  if (tids.size() <= 1) return tids.empty() ? pid : tids.front();
  std::sort(tids.begin(), tids.end());
  double uptime_s = 0;
  std::ifstream("/proc/uptime") >> uptime_s;
  const double ticks_per_s = static_cast<double>(sysconf(_SC_CLK_TCK));
  pid_t best = pid;
  // (its call would end early, not waiting for a signal, running now, wake-up rate):
  // smaller is better. One waiting for a signal sleeps through the hold unless a
  // signal comes (Borrow::slept).
  std::tuple<bool, bool, bool, double> best_score{true, true, true, 1e300};
  for (pid_t tid : tids) {
    double rate = wakeup_rate(pid, tid, uptime_s, ticks_per_s);
    if (rate < 0) continue;
    const long nr = blocked_in(pid, tid);
    std::tuple<bool, bool, bool, double> score{borrowing_disturbs(nr), nr != SYS_pause && nr != SYS_rt_sigsuspend,
                                               stat_state(pid, tid) != 'S', rate};
    if (score < best_score) best = tid, best_score = score;
  }
  return best;
}

namespace {

// The calls of one batch, and the thread that makes them: a thread livesplice creates
// and parks (parked.h), with one call (the clone) borrowed from the quietest thread of
// the program; or, when the target cannot have one, that program thread for the whole
// batch. A borrowed thread runs as the splice's stop does (scheduling.h): livesplice
// real-time on the thread's CPU, the thread raised while it makes our calls. The
// parked thread keeps no thread of the program from running, so it runs its batch at
// the priority it was born with (its creator's, raised), and livesplice stays
// real-time, off that CPU no more. finish() (or the destructor) ends the parked thread,
// or gives the borrowed thread's registers back, lowers it and resumes it, in that
// order.
class Borrowed {
 public:
  // `scratch`: bytes the batch will push (push_bytes); `avoid`: the ranges it will map.
  // `park`: false for the old way only.
  static Result<std::unique_ptr<Borrowed>> take(pid_t pid, size_t scratch = 0,
                                                std::span<const TargetRange> avoid = {}, bool park = true) {
    std::unique_ptr<Borrowed> b(new Borrowed);
    auto mem = Memory::open(pid);
    if (!mem) return mem.status();
    b->mem.emplace(std::move(mem.value()));
    auto gadget = find_syscall_gadget(pid, *b->mem);
    if (!gadget) return gadget.status();
    pid_t tid = quietest_thread(pid);
    const int seccomp_mode = SeccompFilters::mode(pid, tid);
    b->cpu = std::make_unique<CpuScope>(pid, tid);
    b->realtime = std::make_unique<RealtimeScope>();
    auto stop = ThreadGroupStop::stop_thread(pid, tid);
    if (!stop) stop = ThreadGroupStop::stop_one(pid);   // it exited meanwhile: any thread
    if (!stop) return stop.status();
    b->stop = std::move(stop.value());
    Thread& thread = b->stop->threads().front();
    auto filters =
        SeccompFilters::read(thread.tid, thread.tid == tid ? seccomp_mode : SeccompFilters::mode(pid, thread.tid));
    if (!filters) return filters.status();
    // Its signal mask as it sleeps (rt_sigsuspend's own): what give_back() checks.
    b->sleeps_ = waits_for_signal(thread.regs) &&
                 ptrace(PTRACE_GETSIGMASK, thread.tid, sizeof b->sleep_mask_, &b->sleep_mask_) == 0;
    b->raised = std::make_unique<ThreadPriorityScope>(thread.tid, b->cpu->cpu());
    b->sc_ = std::make_unique<RemoteSyscall>(*b->stop, thread, *gadget, std::move(filters.value()));
    if (!park) return b;
    auto parked = ParkedThread::create(*b->stop, *b->sc_, b->borrowed.why_not_parked);
    if (!parked) return parked.status();
    if (!*parked) return b;   // the borrowed thread makes every call
    b->parked = std::move(parked.value());
    const cpu_set_t cpus = b->raised->cpus();
    b->give_back();
    b->cpu->end();
    LS_TRY(b->parked->take_over(cpus));
    if (scratch == 0) return b;
    if (Status s = b->parked->take_scratch(scratch, avoid); s.ok()) return b;
    // No scratch page for it (a race for the address): the old way, from the start.
    b.reset();
    return take(pid, 0, {}, false);
  }
  ~Borrowed() { (void)finish(); }
  Borrowed(const Borrowed&) = delete;
  Borrowed& operator=(const Borrowed&) = delete;

  // One call of the batch.
  Result<int64_t> call(const PlannedCall& c) { return parked ? parked->call(c) : sc_->call(c); }
  Result<int64_t> call(long nr, uint64_t a1) { return call(PlannedCall{nr, {a1}}); }
  // The thread making the calls: its filters, gadget and scratch memory.
  RemoteSyscall& sc() { return parked ? parked->remote() : *sc_; }

  // Ends the batch: which thread of the program was borrowed, for how many calls, how
  // long it was kept from running; and the parked thread's calls and life.
  Borrow finish() {
    if (!stop) return {};
    if (parked) {
      (void)parked->end();
      borrowed.parked_calls = parked->calls();
      borrowed.parked_us = parked->lived_us();
      parked.reset();
    } else {
      give_back();
    }
    Borrow out = borrowed;
    stop.reset();
    realtime.reset();
    cpu.reset();
    return out;
  }

  std::optional<Memory> mem;

 private:
  Borrowed() = default;
  // The borrowed thread's registers back, lowered, resumed; its cost in `borrowed`.
  // One that sleeps until a signal (sleeps_) was kept from running only if a signal
  // came for it meanwhile: none pending now, it is kept no longer than from this check
  // to its resume (a signal arriving in between waits that long).
  void give_back() {
    if (!sc_) return;
    const pid_t tid = stop->threads().front().tid;
    borrowed.tid = tid;
    borrowed.calls = sc_->calls_made();
    sc_.reset();
    raised.reset();
    signal_point(stop->pid(), tid, "lend:held");
    const auto checked = std::chrono::steady_clock::now();
    auto pending = sleeps_ ? signal_pending(tid, sleep_mask_) : Result<bool>(true);
    stop->resume();
    const StopTiming& t = stop->timing();
    auto us = [](auto from, auto to) { return std::chrono::duration<double, std::micro>(to - from).count(); };
    borrowed.held_us = us(t.first_stop, t.resumed);
    borrowed.slept = pending && !*pending && !stop->threads().front().gone;
    borrowed.us = borrowed.slept ? us(checked, t.resumed) : borrowed.held_us;
  }

  std::unique_ptr<CpuScope> cpu;
  std::unique_ptr<RealtimeScope> realtime;
  std::unique_ptr<ThreadGroupStop> stop;
  std::unique_ptr<ThreadPriorityScope> raised;
  std::unique_ptr<RemoteSyscall> sc_;
  std::unique_ptr<ParkedThread> parked;
  Borrow borrowed;
  bool sleeps_ = false;        // interrupted asleep until a signal (waits_for_signal)
  uint64_t sleep_mask_ = 0;    // the signals it blocked there
};

// The lowest file descriptor number free in the target: the one its next
// memfd_create will get (for evaluating the calls that name it).
uint64_t lowest_free_fd(pid_t pid) {
  std::vector<bool> used(1024);
  if (DIR* d = opendir(fmt::format("/proc/{}/fd", pid).c_str())) {
    while (dirent* e = readdir(d)) {
      int fd = std::atoi(e->d_name);
      if (e->d_name[0] != '.' && fd >= 0 && fd < static_cast<int>(used.size())) used[fd] = true;
    }
    closedir(d);
  }
  uint64_t fd = 0;
  while (fd < used.size() && used[fd]) ++fd;
  return fd;
}

// The two ways to map regions, in order of preference.
//  - memfd: memfd_create (sized and filled from our side), mmap(MAP_SHARED) of it,
//    mprotect of the writable tail, close. Each region is named in /proc/PID/maps
//    ("/memfd:livesplice:…") and written from our side through the file.
//  - anonymous: mmap(MAP_PRIVATE|MAP_ANONYMOUS) of the code part read+exec and of the
//    rest read+write, written from our side through /proc/PID/mem. Only mmap: what a
//    filter without memfd_create (systemd's SystemCallFilter= allow lists, sandboxes)
//    still lets a program do. Unnamed in /proc/PID/maps ("anonymous:NAME" in the
//    ledger, whose record says which kind its own copy is: ledger.h).
// Neither ever asks for a mapping both writable and executable, nor adds PROT_EXEC to
// one (what MemoryDenyWriteExecute= and PR_SET_MDWE refuse): the code is written from
// outside, never through a writable mapping of the target.
enum class Way { Memfd, Anonymous };

struct Step {
  PlannedCall call;
  size_t request = 0;
  bool maps = false;        // an mmap creating (part of) the request's region
  bool takes_fd = false;    // the fd memfd_create returned goes in its 1st or 5th argument
};

uint64_t code_part(const RegionRequest& r) { return r.readonly ? 0 : page_up(r.exec_size); }
int code_prot(const RegionRequest& r) {
  return r.readonly ? PROT_READ : (code_part(r) ? PROT_READ | PROT_EXEC : PROT_READ | PROT_WRITE);
}

std::vector<Step> plan(Way way, const std::vector<RegionRequest>& requests, const std::vector<TargetAddr>& names,
                       uint64_t fd) {
  std::vector<Step> steps;
  for (size_t i = 0; i < requests.size(); ++i) {
    const RegionRequest& r = requests[i];
    const uint64_t at = r.at.value(), size = page_up(r.size), code = code_part(r);
    auto step = [&](PlannedCall c, bool maps = false, bool takes_fd = false) { steps.push_back({c, i, maps, takes_fd}); };
    if (way == Way::Memfd) {
      step({SYS_memfd_create, {names[i].value(), MFD_CLOEXEC}});   // sized and filled from our side (fill_memfd)
      step({SYS_mmap, {at, size, static_cast<uint64_t>(code_prot(r)), MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0}}, true,
           true);
      if (code && code < size) step({SYS_mprotect, {at + code, size - code, PROT_READ | PROT_WRITE}});
      step({SYS_close, {fd}}, false, true);
    } else {
      const uint64_t anon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, none = static_cast<uint64_t>(-1);
      uint64_t first = code && code < size ? code : size;
      step({SYS_mmap, {at, first, static_cast<uint64_t>(code_prot(r)), anon, none, 0}}, true);
      if (first < size) step({SYS_mmap, {at + first, size - first, PROT_READ | PROT_WRITE, anon, none, 0}}, true);
    }
  }
  return steps;
}

// Sizes and fills the memfd the target just made, from our side through /proc/PID/fd:
// one call fewer for the borrowed thread, and the region holds its contents the moment
// it is mapped.
Status fill_memfd(pid_t pid, int64_t fd, const RegionRequest& r) {
  int ours = ::open(fmt::format("/proc/{}/fd/{}", pid, fd).c_str(), O_RDWR | O_CLOEXEC);
  if (ours < 0) return error("process {}: cannot open its memfd {}: {}", pid, fd, std::strerror(errno));
  // Its other threads run meanwhile and may have put another file at that descriptor —
  // any file it can read, which we, as root, would open writable. Only an unlinked
  // file (our memfd) is written.
  struct stat st;
  if (::fstat(ours, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0) {
    ::close(ours);
    return Status::error(fmt::format("process {}: descriptor {} is no longer the memfd livesplice made for {} "
                                     "(tampering); not writing",
                                     pid, fd, r.name),
                         Exit::Unsafe);
  }
  bool ok = ::ftruncate(ours, static_cast<off_t>(page_up(r.size))) == 0 &&
            ::pwrite(ours, r.contents.data(), r.contents.size(), 0) == static_cast<ssize_t>(r.contents.size());
  int err = errno;
  ::close(ours);
  if (!ok) return error("process {}: cannot size or fill its memfd for {}: {}", pid, r.name, std::strerror(err));
  return {};
}

// Refuses a plan that asks for W+X or adds PROT_EXEC: it must never be attempted.
Status check_write_xor_exec(const std::vector<Step>& steps) {
  for (const auto& s : steps) {
    const PlannedCall& c = s.call;
    bool wx = c.nr == SYS_mmap && (c.args[2] & (PROT_WRITE | PROT_EXEC)) == (PROT_WRITE | PROT_EXEC);
    bool adds_exec = c.nr == SYS_mprotect && (c.args[2] & PROT_EXEC);
    if (wx || adds_exec) return error("internal error: {} would break write-xor-execute", c.describe());
  }
  return {};
}

std::string region_name(Way way, const RegionRequest& r) {
  return way == Way::Memfd ? "/memfd:" + r.name : "anonymous:" + r.name;
}

Status unmap_with(Borrowed& b, pid_t pid, const std::vector<Region>& regions) {
  std::vector<PlannedCall> calls;
  for (const auto& r : regions) calls.push_back({SYS_munmap, {r.range.start.value(), r.range.size()}});
  if (std::string refused = b.sc().filters().first_refused(calls, b.sc().gadget()); !refused.empty())
    return Status::error(fmt::format("process {}: cannot unmap livesplice's regions: {}", pid, refused), Exit::Unsafe);
  Status first;
  for (size_t i = 0; i < regions.size(); ++i) {
    auto rc = b.call(calls[i]);
    if (!rc) return rc.status();
    if (*rc != 0 && first.ok())
      first = error("process {}: munmap of {} at {} failed: {}", pid, regions[i].name, regions[i].range.start,
                    std::strerror(-*rc));
  }
  return first;
}

struct Mapped {
  std::vector<Region> regions;
  Borrow borrow;
};

// Runs `steps` with the borrowed thread. On failure unmaps what it mapped (and closes
// the memfd it holds); `nothing_done` then says whether it failed before any call had
// an effect (memfd_create itself failed), so that another way may be tried.
Status run_steps(Borrowed& b, pid_t pid, Way way, const std::vector<RegionRequest>& requests,
                 const std::vector<Step>& steps, std::vector<Region>& done, bool& nothing_done) {
  int64_t fd = -1;
  nothing_done = true;
  auto fail = [&](Status s) {
    if (fd >= 0) (void)b.call(SYS_close, static_cast<uint64_t>(fd));
    (void)unmap_with(b, pid, done);
    done.clear();
    return s;
  };
  for (const Step& step : steps) {
    PlannedCall c = step.call;
    if (step.takes_fd) c.args[c.nr == SYS_mmap ? 4 : 0] = static_cast<uint64_t>(fd);
    auto rc = b.call(c);
    if (!rc) return fail(rc.status());
    const RegionRequest& r = requests[step.request];
    if (c.nr == SYS_memfd_create) {
      if (*rc < 0) return fail(error("process {}: {} failed: {}", pid, c.describe(), std::strerror(-*rc)));
      fd = *rc;
      nothing_done = false;
      if (Status s = fill_memfd(pid, fd, r); !s.ok()) return fail(s);
    } else if (c.nr == SYS_close) {
      fd = -1;
    } else if (c.nr == SYS_mmap && static_cast<uint64_t>(*rc) != c.args[0]) {
      nothing_done = false;
      return fail(error("process {}: cannot map {} bytes at {:#x}: {}", pid, c.args[1], c.args[0],
                        *rc < 0 && *rc > -4096 ? std::strerror(-*rc) : "placed elsewhere"));
    } else if (*rc < 0) {
      nothing_done = false;
      return fail(error("process {}: {} failed: {}", pid, c.describe(), std::strerror(-*rc)));
    }
    nothing_done = false;
    if (step.maps && (done.empty() || done.back().range.start != r.at))
      done.push_back(Region{{r.at, r.at + static_cast<int64_t>(page_up(r.size))}, region_name(way, r)});
  }
  // The anonymous way's contents, through /proc/PID/mem, before the thread goes back.
  if (way == Way::Anonymous)
    for (const auto& r : requests)
      if (!r.contents.empty())
        if (Status s = b.mem->write(r.at, r.contents); !s.ok()) return fail(s);
  return {};
}

// Runs in the guardian child: maps every request with one borrowed thread, the first
// way the thread's seccomp filters let run for `requests` and `then` alike; on failure
// unmaps what it mapped, so that nothing stays behind either way.
Result<Mapped> map_in_target(pid_t pid, const std::vector<RegionRequest>& requests,
                             const std::vector<RegionRequest>& then) {
  // Every name in one block of scratch memory, pushed only if the memfd way runs.
  std::string blob;
  std::vector<size_t> offsets;
  std::vector<TargetRange> ranges;
  for (const auto& r : requests) {
    offsets.push_back(blob.size());
    blob += r.name;
    blob.push_back(0);
    ranges.push_back({r.at, r.at + static_cast<int64_t>(page_up(r.size))});
  }
  auto taken = Borrowed::take(pid, blob.size(), ranges);
  if (!taken) return taken.status();
  Borrowed& b = **taken;
  const TargetAddr blob_at = b.sc().next_scratch(blob.size());
  std::vector<TargetAddr> names;
  for (size_t off : offsets) names.push_back(blob_at + static_cast<int64_t>(off));
  const uint64_t fd = lowest_free_fd(pid);

  std::string refusals;
  Status failed;
  for (Way way : {Way::Memfd, Way::Anonymous}) {
    std::vector<Step> steps = plan(way, requests, names, fd);
    LS_TRY(check_write_xor_exec(steps));
    std::vector<PlannedCall> calls;
    for (const auto& s : steps) calls.push_back(s.call);
    // What the later map will ask, judged now (its names are not pushed: no filter
    // looks at a name's bytes).
    std::vector<Step> later = plan(way, then, std::vector<TargetAddr>(then.size(), blob_at), fd);
    LS_TRY(check_write_xor_exec(later));
    for (const auto& s : later) calls.push_back(s.call);
    if (std::string refused = b.sc().filters().first_refused(calls, b.sc().gadget()); !refused.empty()) {
      refusals += (refusals.empty() ? "" : "; ") + refused;
      continue;
    }
    if (way == Way::Memfd) {
      auto at = b.sc().push_bytes(*b.mem, std::span(reinterpret_cast<const uint8_t*>(blob.data()), blob.size()));
      if (!at) return at.status();
    }
    Mapped out;
    bool nothing_done = false;
    failed = run_steps(b, pid, way, requests, steps, out.regions, nothing_done);
    if (failed.ok()) {
      out.borrow = b.finish();
      return out;
    }
    if (!nothing_done) return failed;   // else another way may still work (memfd_create refused otherwise)
  }
  if (!failed.ok()) return failed;
  return Status::error(fmt::format("process {}: its seccomp filter refuses every way livesplice maps code, so "
                                   "nothing was attempted: {}",
                                   pid, refusals),
                       Exit::Unsafe);
}

}  // namespace

void to_json(nlohmann::json& j, const Borrow& b) {
  j = {{"thread", b.tid},         {"calls", b.calls},
       {"us", b.us},              {"held_us", b.held_us},
       {"slept", b.slept},        {"parked_calls", b.parked_calls},
       {"parked_us", b.parked_us}, {"why_not_parked", b.why_not_parked}};
}

void from_json(const nlohmann::json& j, Borrow& b) {
  b.tid = j.at("thread").get<pid_t>();
  b.calls = j.at("calls").get<int>();
  b.us = j.at("us").get<double>();
  b.held_us = j.at("held_us").get<double>();
  b.slept = j.at("slept").get<bool>();
  b.parked_calls = j.at("parked_calls").get<int>();
  b.parked_us = j.at("parked_us").get<double>();
  b.why_not_parked = j.at("why_not_parked").get<std::string>();
}

Status RegionSet::map(const std::vector<RegionRequest>& requests, const std::vector<RegionRequest>& then) {
  auto mapped = map_in_target(target_.pid(), requests, then);
  if (!mapped) return mapped.status();
  regions_ = std::move(mapped->regions);
  borrow_ = mapped->borrow;
  return {};
}

RegionSet::~RegionSet() {
  if (!committed_ && !regions_.empty()) (void)unmap_regions(target_, regions_);
}

Result<Borrow> unmap_regions(const Target& target, const std::vector<Region>& regions) {
  const pid_t pid = target.pid();
  if (regions.empty()) return Borrow{};
  // Locked: the guardian's pages are faulted in before the borrow, not during it.
  auto done = run_to_completion([&](std::string& payload) {
    auto b = Borrowed::take(pid);
    if (!b) return b.status();
    LS_TRY(unmap_with(**b, pid, regions));
    payload = nlohmann::json((*b)->finish()).dump();
    return Status();
  }, Paging::Locked);
  if (!done) return done.status();
  auto report = nlohmann::json::parse(*done, nullptr, false);
  if (report.is_discarded()) return error("process {}: the unmapping helper reported garbage", pid);
  return report.get<Borrow>();
}

}  // namespace ls::proc
