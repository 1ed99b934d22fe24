#include "process/hooks.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "process/regions.h"

namespace ls::proc {

namespace {

using Clock = std::chrono::steady_clock;

// Below the red zone, room for what the kernel would leave a signal handler's frame.
constexpr uint64_t kFrameGap = 512;

bool is_pre(update::HookKind k) { return k == update::HookKind::PreApply || k == update::HookKind::PreUndo; }

// The signals that mean the hook itself went wrong (never delivered: the thread gets
// its registers back instead).
bool faulted(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGABRT || sig == SIGTRAP ||
         sig == SIGSYS;
}

// Waits for a stop or the end of `tid` until `deadline`: its pid, 0 at the deadline, -1
// when it cannot be waited for (gone).
pid_t wait_until(pid_t tid, int& status, Clock::time_point deadline) {
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
    if (r == tid) return r;
    if (r < 0 && errno != EINTR) return -1;
    if (Clock::now() >= deadline) return 0;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

std::string where_in(const HookCall& h, uint64_t pc) {
  if (pc >= h.at.value() && pc - h.at.value() < 0x10000) return fmt::format("{:#x} (hook+{:#x})", pc, pc - h.at.value());
  return fmt::format("{:#x}", pc);
}

// Calls `h` on thread `t` of `group`, stopped (see hooks.h). Its value, or why it was
// abandoned; either way the thread is as it was.
Result<int> call_hook(Thread& t, const HookCall& h, std::chrono::milliseconds limit) {
  arch::Registers saved;
  if (!arch::read_registers(t.tid, saved))
    return error("{}: thread {}: cannot read its registers: {}", h.label, t.tid, std::strerror(errno));
  // As right after a call: the return address at the stack pointer, 16-byte aligned above it.
  const uint64_t frame = arch::call_frame(arch::sp(saved), kFrameGap);
  if (ptrace(PTRACE_POKEDATA, t.tid, reinterpret_cast<void*>(frame), nullptr) != 0)
    return error("{}: thread {}: cannot write a call frame on its stack: {}", h.label, t.tid, std::strerror(errno));
  arch::Registers regs = saved;
  arch::load_call(regs, h.at.value(), frame);
  if (!arch::write_registers(t.tid, regs) || ptrace(PTRACE_CONT, t.tid, nullptr, nullptr) != 0)
    return error("{}: thread {}: cannot start it: {}", h.label, t.tid, std::strerror(errno));

  const Clock::time_point deadline = Clock::now() + limit;
  bool timed_out = false;
  Status failed;
  int value = 0;
  for (;;) {
    int status = 0;
    pid_t r = wait_until(t.tid, status, timed_out ? Clock::time_point::max() : deadline);
    if (r == 0) {   // past the limit: stopped where it is, abandoned
      timed_out = true;
      ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
      continue;
    }
    if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
      t.gone = true;
      return Status::error(fmt::format("{}: the thread running it ended (did the hook exit?)", h.label), Exit::Unsafe);
    }
    if (!WIFSTOPPED(status)) continue;
    const int event = status >> 16, sig = WSTOPSIG(status);
    arch::Registers now{};
    (void)arch::read_registers(t.tid, now);
    if (event == PTRACE_EVENT_STOP && timed_out) {
      failed = Status::error(fmt::format("{} did not return within {} ms (pc {}): abandoned (does it wait for a "
                                         "lock a stopped thread holds?)",
                                         h.label, limit.count(), where_in(h, arch::pc(now))),
                             Exit::Unsafe);
      break;
    }
    if (event != 0 && event != PTRACE_EVENT_STOP) {
      failed = Status::error(fmt::format("{} made a thread or process (ptrace event {}); hooks may not", h.label, event),
                             Exit::Unsafe);
      break;
    }
    if (event == 0 && sig == SIGSEGV && arch::call_returned(now, frame, 0)) {   // returned to 0
      value = arch::call_result(now);
      break;
    }
    if (event == 0 && faulted(sig)) {
      siginfo_t info{};
      ptrace(PTRACE_GETSIGINFO, t.tid, nullptr, &info);
      const bool memory = sig == SIGSEGV || sig == SIGBUS;
      failed = Status::error(fmt::format("{} crashed: {} at pc {}{}; abandoned, the signal not delivered", h.label,
                                         strsignal(sig), where_in(h, arch::pc(now)),
                                         memory ? fmt::format(" (address {})", info.si_addr) : std::string()),
                             Exit::Unsafe);
      break;
    }
    // A signal for the program: kept for the thread, delivered when it is resumed. (A
    // group-stop's event stop: the hook goes on.)
    if (event == 0) t.pending_signal = sig;
    if (timed_out) ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);   // entering a stop dropped it
    ptrace(PTRACE_CONT, t.tid, nullptr, nullptr);
  }
  arch::Registers back = resumable(saved);
  if (!arch::write_registers(t.tid, back))
    return error("{}: thread {}: cannot give its registers back: {}", h.label, t.tid, std::strerror(errno));
  t.regs = saved;
  if (!failed.ok()) return failed;
  return value;
}

// Runs `h` on `t` and records it; a pre_* hook's nonzero value is a refusal.
Status run_one(Thread& t, const HookCall& h, std::chrono::milliseconds limit, std::vector<HookRun>& ran) {
  auto start = Clock::now();
  auto value = call_hook(t, h, limit);
  if (!value) return value.status();
  ran.push_back({h.label, *value, std::chrono::duration<double, std::micro>(Clock::now() - start).count()});
  if (is_pre(h.kind) && *value != 0)
    return Status::error(fmt::format("{} returned {}: the patch refuses to be {} now", h.label, *value,
                                     h.kind == update::HookKind::PreApply ? "applied" : "undone"),
                         Exit::Unsafe);
  return {};
}

// A thread of the stop to borrow: one stopped already, else a sleeper whose call the
// kernel restarts exactly once interrupted.
Result<size_t> borrowable(ThreadGroupStop& stop) {
  auto& threads = stop.threads();
  for (size_t i = 0; i < threads.size(); ++i)
    if (!threads[i].gone && threads[i].stopped) return i;
  for (size_t i = 0; i < threads.size(); ++i) {
    const Thread& t = threads[i];
    if (t.gone || !t.asleep || !call_restarts(static_cast<long>(arch::syscall_number(t.regs)))) continue;
    LS_TRY(stop.stop_sleeper(i));
    if (!threads[i].gone && threads[i].stopped) return i;
  }
  return Status::error("no thread to run the hooks on: every thread sleeps in a system call that an interruption "
                       "would end early (EINTR)",
                       Exit::Unsafe);
}

}  // namespace

nlohmann::json to_json(const std::vector<HookRun>& ran) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : ran) out.push_back({{"hook", r.label}, {"value", r.value}, {"us", r.us}});
  return out;
}

void print_hooks(const nlohmann::json& ran) {
  for (const auto& r : ran)
    fmt::print("  ran {} in {:.0f} us: {}\n", printable(r.at("hook").get<std::string>()), r.at("us").get<double>(),
               r.at("value").get<int>());
}

Result<std::vector<HookCall>> link_hooks(const update::Contents& u, const std::map<uint32_t, TargetAddr>& symbol_at) {
  std::vector<HookCall> out;
  for (const auto& h : u.hooks) {
    auto at = symbol_at.find(h.post_symbol);
    if (at == symbol_at.end()) return error("{}: its function has no address after linking", h.label());
    out.push_back({h.kind, h.label(), at->second});
  }
  return out;
}

std::vector<LedgerHook> undo_hooks(const std::vector<HookCall>& hooks) {
  std::vector<LedgerHook> out;
  for (const auto& h : hooks)
    if (h.kind == update::HookKind::PreUndo || h.kind == update::HookKind::Undo || h.kind == update::HookKind::PostUndo)
      out.push_back({std::string(update::to_string(h.kind)), h.label, h.at});
  return out;
}

std::vector<HookCall> hooks_of(const LedgerEntry& e) {
  std::vector<HookCall> out;
  for (const auto& h : e.hooks)
    for (auto k : {update::HookKind::PreUndo, update::HookKind::Undo, update::HookKind::PostUndo})
      if (h.kind == update::to_string(k)) out.push_back({k, h.label, h.at});
  return out;
}

Status run_hooks(pid_t pid, const std::vector<HookCall>& hooks, update::HookKind kind,
                 std::chrono::milliseconds limit, std::vector<HookRun>& ran) {
  for (const auto& h : hooks) {
    if (h.kind != kind) continue;
    auto stop = ThreadGroupStop::stop_thread(pid, quietest_thread(pid));
    if (!stop) stop = ThreadGroupStop::stop_one(pid);   // it exited meanwhile: any thread
    if (!stop) return stop.status();
    LS_TRY(run_one((*stop)->threads().front(), h, limit, ran));
  }
  return {};
}

Status run_hooks_stopped(ThreadGroupStop& stop, const std::vector<HookCall>& hooks, update::HookKind kind,
                         std::chrono::milliseconds limit, std::vector<HookRun>& ran) {
  for (const auto& h : hooks) {
    if (h.kind != kind) continue;
    auto i = borrowable(stop);
    if (!i) return i.status();
    LS_TRY(run_one(stop.threads()[*i], h, limit, ran));
  }
  return {};
}

}  // namespace ls::proc
