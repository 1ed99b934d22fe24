// Registering the new code's unwind tables in the target (see frames.h for why libgcc's
// registry and what is hard).
#include "process/frames.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <thread>

#include "process/maps.h"
#include "process/ptrace.h"
#include "process/regions.h"
#include "update/format.h"

namespace ls::proc {
namespace {

using namespace std::chrono_literals;

// How long a call may take before the thread making it is taken to be blocked on a
// lock it holds itself (frames.h). libgcc's registration is a few list operations.
constexpr auto kCallLimit = 200ms;
// libgcc's `struct object`: its `s` word (encoding and flags) is never zero once
// registered: registration sets the encoding to DW_EH_PE_omit.
constexpr uint64_t kObjectStateOffset = 32;

// An int3 (0xcc) anywhere in the target's code: a return address whose trap stops the
// thread. Any byte will do, inside an instruction or not: the CPU decodes from the pc.
Result<TargetAddr> find_trap(const Target& target) {
  for (bool libc_first : {true, false})
    for (const auto& m : target.maps()) {
      if (!m.exec || !m.read || (libc_first && m.path.find("libc") == std::string::npos)) continue;
      std::vector<uint8_t> buf(std::min<uint64_t>(m.range.size(), 4 << 20));
      if (!target.memory().read(m.range.start, buf).ok()) continue;
      for (size_t i = 0; i < buf.size(); ++i)
        if (buf[i] == 0xcc) return m.range.start + static_cast<int64_t>(i);
    }
  return error("process {}: no int3 byte in its code to return to", target.pid());
}

// The unwinder's function `name`: libgcc_s's, else any module's global of that name.
std::optional<TargetAddr> unwinder_function(const Target& target, const std::string& name) {
  for (bool libgcc_first : {true, false})
    for (const auto& mod : target.modules()) {
      if (libgcc_first && !mod.name.starts_with("libgcc_s.so")) continue;
      auto at = mod.lookup(name, false, "");
      if (!at.empty()) return at.front();
    }
  return std::nullopt;
}

// fn(args) on the quietest thread of the program, the others running; its return value.
// The thread gets its registers back on every path (RemoteSyscall's restore, which also
// restarts a system call it was stopped in).
Result<uint64_t> call_in_target(const Target& target, TargetAddr fn, std::array<uint64_t, 2> args,
                                const char* what) {
  const pid_t pid = target.pid();
  auto trap = find_trap(target);
  if (!trap) return trap.status();
  auto stop = ThreadGroupStop::stop_thread(pid, quietest_thread(pid));
  if (!stop) stop = ThreadGroupStop::stop_one(pid);   // it exited meanwhile: any thread
  if (!stop) return stop.status();
  Thread& t = (*stop)->threads().front();
  RemoteSyscall restore(**stop, t, *trap);
  arch::Registers regs = t.regs;
  // Below the red zone, aligned as after a call: the return address (the trap) on top.
  const uint64_t sp = arch::call_frame(arch::sp(regs), 512);
  uint64_t ret = trap->value();
  LS_TRY(target.memory().write(TargetAddr(sp), std::span(reinterpret_cast<const uint8_t*>(&ret), sizeof ret)));
  arch::load_call(regs, fn.value(), sp, args);
  if (!arch::write_registers(t.tid, regs) || ptrace(PTRACE_CONT, t.tid, nullptr, nullptr) != 0)
    return error("thread {}: cannot start {}: {}", t.tid, what, std::strerror(errno));
  const auto deadline = std::chrono::steady_clock::now() + kCallLimit;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(t.tid, &status, __WALL | WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      if (std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20us);
        continue;
      }
      // Blocked, most likely on a lock it holds itself: back to where it was.
      ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
      do r = waitpid(t.tid, &status, __WALL);
      while (r < 0 && errno == EINTR);
      if (r != t.tid || !WIFSTOPPED(status)) t.gone = true;
      return error("thread {}: {} did not return within {} ms (the thread may hold the unwinder's lock); "
                   "nothing registered", t.tid, what, kCallLimit.count());
    }
    if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
      t.gone = true;
      return error("thread {}: exited during {}", t.tid, what);
    }
    arch::Registers after;
    if (!arch::read_registers(t.tid, after))
      return error("thread {}: cannot read its registers: {}", t.tid, std::strerror(errno));
    const int sig = WSTOPSIG(status);
    if ((status >> 16) == 0 && sig == SIGTRAP && arch::call_returned(after, sp, trap->value() + arch::kTrapPcAdvance))
      return arch::call_result_word(after);
    if ((status >> 16) == 0 && (sig == SIGTRAP || sig == SIGSEGV || sig == SIGBUS || sig == SIGILL ||
                                sig == SIGFPE || sig == SIGABRT))
      return error("thread {}: {} stopped with signal {} at pc {:#x}; the signal was not delivered", t.tid, what,
                   strsignal(sig), arch::pc(after));
    if ((status >> 16) == 0) t.pending_signal = sig;   // someone else's: delivered on resume
    if (ptrace(PTRACE_CONT, t.tid, nullptr, nullptr) != 0)
      return error("thread {}: cannot continue {}: {}", t.tid, what, std::strerror(errno));
  }
}

Result<bool> registered(const Target& target, const UnwindTable& t) {
  auto state = target.memory().read_value<uint64_t>(t.object + static_cast<int64_t>(kObjectStateOffset));
  if (!state) return state.status();
  return *state != 0;
}

}  // namespace

std::vector<UnwindTable> unwind_tables(const update::Contents& u, const load::Image& image) {
  std::vector<UnwindTable> out;
  const auto& secs = u.file.sections();
  for (uint32_t i : u.post_sections) {
    if (update::original_name(secs[i].name, update::kPostPrefix) != update::kEhFrame) continue;
    // Its storage is the next post section of that name (the writer adds it right after).
    for (uint32_t j : u.post_sections)
      if (j > i && update::original_name(secs[j].name, update::kPostPrefix) == update::kEhFrameObject) {
        if (image.section_at.count(i) && image.section_at.count(j))
          out.push_back({image.section_at.at(i), image.section_at.at(j)});
        break;
      }
  }
  return out;
}

Status register_unwind(Context& ctx, const Target& target, const std::vector<UnwindTable>& tables) {
  if (tables.empty()) return {};
  auto fn = unwinder_function(target, "__register_frame_info");
  if (!fn) {
    // Most C programs: nothing in the process unwinds yet (glibc loads libgcc_s on first
    // use), so this says only -v; README names the limit.
    ctx.note(fmt::format("process {}: no unwinder loaded (libgcc_s): the new code's unwind tables are not "
                         "registered; should the process load one later, exceptions, thread cancellation and "
                         "backtraces stop at new code",
                         target.pid()));
    return {};
  }
  for (const auto& t : tables) {
    auto rc = call_in_target(target, *fn, {t.eh_frame.value(), t.object.value()}, "__register_frame_info");
    if (!rc) return rc.status().context(fmt::format("registering the unwind table at {}", t.eh_frame));
    auto now = registered(target, t);
    if (!now) return now.status();
    if (!*now) return error("process {}: __register_frame_info left the table at {} unregistered", target.pid(), t.eh_frame);
  }
  ctx.note(fmt::format("registered {} unwind table(s) with the target's unwinder", tables.size()));
  return {};
}

Status deregister_unwind(const Target& target, const std::vector<UnwindTable>& tables) {
  std::optional<TargetAddr> fn;
  for (const auto& t : tables) {
    auto is = registered(target, t);
    if (!is) return is.status();
    if (!*is) continue;
    if (!fn) fn = unwinder_function(target, "__deregister_frame_info");
    if (!fn)
      return error("process {}: the unwind table at {} is registered, but no __deregister_frame_info is found; "
                   "its code stays mapped", target.pid(), t.eh_frame);
    auto rc = call_in_target(target, *fn, {t.eh_frame.value(), 0}, "__deregister_frame_info");
    if (!rc) return rc.status().context(fmt::format("deregistering the unwind table at {}", t.eh_frame));
    if (*rc != t.object.value())
      return error("process {}: __deregister_frame_info({}) returned {:#x}, not its storage at {}", target.pid(),
                   t.eh_frame, *rc, t.object);
    std::array<uint8_t, update::kEhFrameObjectSize> zeros{};
    LS_TRY(target.memory().write(t.object, zeros));
  }
  return {};
}

}  // namespace ls::proc
