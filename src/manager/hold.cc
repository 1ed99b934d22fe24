// Holding a thread at ld.so's report of its maps (see hold.h).
#include "manager/hold.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <link.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "process/maps.h"
#include "process/ptrace.h"

namespace ls::manager {

namespace {


struct Auxv {
  uint64_t base = 0;    // AT_BASE: where ld.so is mapped (0: none)
  uint64_t entry = 0;   // AT_ENTRY
};

Result<Auxv> read_auxv(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/auxv", pid), std::ios::binary);
  if (!in) return error("process {}: cannot read its auxiliary vector", pid);
  Auxv a;
  uint64_t pair[2];
  while (in.read(reinterpret_cast<char*>(pair), sizeof pair) && pair[0] != AT_NULL) {
    if (pair[0] == AT_BASE) a.base = pair[1];
    if (pair[0] == AT_ENTRY) a.entry = pair[1];
  }
  if (a.entry == 0) return error("process {}: its auxiliary vector has no entry point", pid);
  return a;
}

// The first mapping of ld.so (it starts at AT_BASE).
Result<proc::Mapping> loader_mapping(pid_t pid, uint64_t base, const std::vector<proc::Mapping>& maps) {
  for (const auto& m : maps)
    if (m.range.start.value() == base && m.file_backed()) return m;
  return error("process {}: nothing file-backed is mapped at its ld.so's base {:#x}", pid, base);
}

// Values of the dynamic symbols `names` in the ELF file open as `fd` (0 when absent).
std::vector<uint64_t> dynamic_symbols(int fd, const std::vector<std::string>& names) {
  std::vector<uint64_t> values(names.size(), 0);
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  for (Elf_Scn* scn = nullptr; elf && (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || sh.sh_entsize == 0) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    for (size_t i = 0; data && i < sh.sh_size / sh.sh_entsize; ++i) {
      GElf_Sym sym;
      if (!gelf_getsym(data, static_cast<int>(i), &sym)) continue;
      const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
      for (size_t k = 0; name && k < names.size(); ++k)
        if (names[k] == name) values[k] = sym.st_value;
    }
  }
  if (elf) elf_end(elf);
  return values;
}

}  // namespace

Result<LoaderHook> loader_hook(pid_t pid) {
  auto aux = read_auxv(pid);
  if (!aux) return aux.status();
  if (aux->base == 0) return LoaderHook{TargetAddr(aux->entry), TargetAddr()};   // no ld.so: its entry
  auto maps = proc::read_maps(pid);
  if (!maps) return maps.status();
  auto ld = loader_mapping(pid, aux->base, *maps);
  if (!ld) return ld.status();
  // Through map_files: the file mapped, whatever its path holds now.
  std::string via = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, ld->range.start.value(), ld->range.end.value());
  int fd = ::open(via.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error("process {}: cannot open its ld.so {}: {}", pid, ld->path, std::strerror(errno));
  auto v = dynamic_symbols(fd, {"_dl_debug_state", "_r_debug"});
  ::close(fd);
  if (v[0] == 0 || v[1] == 0)
    return error("{}: no _dl_debug_state or _r_debug among its dynamic symbols: cannot tell when it has mapped",
                 ld->path);
  return LoaderHook{TargetAddr(aux->base + v[0]), TargetAddr(aux->base + v[1] + offsetof(r_debug, r_state))};
}

bool in_loader(pid_t pid, TargetAddr pc) {
  auto aux = read_auxv(pid);
  auto maps = proc::read_maps(pid);
  if (!aux || !maps || aux->base == 0) return false;
  auto ld = loader_mapping(pid, aux->base, *maps);
  const proc::Mapping* at = proc::mapping_at(*maps, pc);
  return ld && at && at->exec && at->inode == ld->inode && at->path == ld->path;
}

Result<Hold> Hold::seize(pid_t tid, HoldKind kind, HoldRecord* record) {
  pid_t tgid = 0;
  std::ifstream status(fmt::format("/proc/{}/status", tid));
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("Tgid:")) tgid = std::atoi(line.c_str() + 5);
  if (tgid == 0) return error("thread {} is gone", tid);
  // Exec: the stop after execve (PTRACE_EVENT_EXEC), before ld.so's first instruction.
  const unsigned long options = kind == HoldKind::Exec ? PTRACE_O_TRACEEXEC : 0;
  if (ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(options)) != 0)
    return error("thread {}: cannot seize it: {}", tid, std::strerror(errno));
  // Load: it stops as its open returns to ld.so. Asked now, while the open waits for our
  // answer (a wait no interrupt ends): asked after, ld.so could map and report first.
  if (kind == HoldKind::Load) ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
  if (record) record->tid = tid;
  return Hold(tid, tgid, kind, record);
}

void Hold::follow_exec() {
  tid_ = tgid_;
  if (record_) record_->tid = tid_;
}

Hold::Hold(Hold&& o) noexcept
    : tid_(o.tid_), tgid_(o.tgid_), kind_(o.kind_), record_(o.record_), state_(std::exchange(o.state_, State::Released)),
      hook_(o.hook_), armed_(o.armed_), saved_regs_(o.saved_regs_), saved_mask_(o.saved_mask_) {}

Hold::~Hold() {
  if (state_ == State::Parked) (void)release();
  else if (state_ != State::Released) let_go();
}

Result<std::optional<int>> Hold::next_stop(const std::atomic<bool>& stopping,
                                           std::chrono::steady_clock::time_point deadline) {
  // Polled, not blocking: a starting process must not wait on our scheduling more than
  // the poll's step, and `stopping` is seen within it.
  auto step = std::chrono::microseconds(10);
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(tid_, &status, __WALL | WNOHANG);
    if (r == tid_) {
      if (WIFEXITED(status) || WIFSIGNALED(status)) return std::optional<int>(-1);
      return std::optional<int>(status);
    }
    if (r < 0 && errno == ECHILD && kind_ == HoldKind::Exec && tid_ != tgid_) {
      follow_exec();   // a thread other than the leader ran execve: it goes on as the leader
      continue;
    }
    if (r < 0 && errno != EINTR) return std::optional<int>(-1);
    if (stopping.load() || std::chrono::steady_clock::now() > deadline) return std::optional<int>();
    std::this_thread::sleep_for(step);
    step = std::min<std::chrono::microseconds>(step * 2, std::chrono::microseconds(1000));
  }
}

Status Hold::arm() {
  if (!arch::set_exec_breakpoint(tid_, hook_->breakpoint.value()))
    return error("thread {}: cannot set a hardware breakpoint: {}", tid_, std::strerror(errno));
  armed_ = true;
  return {};
}

Status Hold::disarm() {
  if (!armed_) return {};
  if (!arch::clear_exec_breakpoint(tid_))
    return error("thread {}: cannot clear its hardware breakpoint: {}", tid_, std::strerror(errno));
  armed_ = false;
  return {};
}

Result<bool> Hold::run_to_loaded(const std::atomic<bool>& stopping, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto cont = [&](int sig) {
    state_ = ptrace(PTRACE_CONT, tid_, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(sig))) == 0
                 ? State::Running : State::Released;
  };
  for (;;) {
    auto stop = next_stop(stopping, deadline);
    if (!stop) return stop.status();
    if (!*stop) {            // asked to stop, or too long: let it go unpatched
      let_go();
      return false;
    }
    if (**stop == -1) {      // it ended
      state_ = State::Released;
      return false;
    }
    state_ = State::Stopped;
    const int status = **stop, sig = WSTOPSIG(status), event = status >> 16;
    if (event == PTRACE_EVENT_EXEC || (event == PTRACE_EVENT_STOP && sig == SIGTRAP && !armed_)) {
      if (event == PTRACE_EVENT_EXEC) follow_exec();
      auto hook = loader_hook(tgid_);
      if (!hook) {
        let_go();
        return hook.status();
      }
      hook_ = *hook;
      if (Status s = arm(); !s.ok()) {
        let_go();
        return s;
      }
      cont(0);
      continue;
    }
    if (event == PTRACE_EVENT_STOP) {   // our interrupt again, or a stop by job control
      if (sig == SIGTRAP) cont(0);
      else state_ = ptrace(PTRACE_LISTEN, tid_, nullptr, nullptr) == 0 ? State::Running : State::Released;
      continue;
    }
    arch::Registers regs;
    if (sig == SIGTRAP && armed_ && arch::read_registers(tid_, regs) && arch::pc(regs) == hook_->breakpoint.value()) {
      bool loaded = hook_->state.null();
      if (!loaded) {
        auto mem = proc::Memory::open(tgid_);
        auto state = mem ? mem->read_value<int>(hook_->state) : Result<int>(mem.status());
        if (!state) {
          let_go();
          return state.status();
        }
        loaded = *state == r_debug::RT_CONSISTENT;
      }
      if (loaded) {
        saved_regs_ = regs;
        return true;
      }
      cont(0);
      continue;
    }
    cont(sig);   // the program's own signal, delivered as it would have been
  }
}

void Hold::let_go() {
  if (state_ == State::Running) {
    ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr);
    int status = 0;
    int sig = 0;
    for (;;) {
      pid_t r = ::waitpid(tid_, &status, __WALL);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
        state_ = State::Released;
        return;
      }
      if ((status >> 16) == PTRACE_EVENT_STOP) break;
      sig = WSTOPSIG(status);   // a signal on its way: given back at detach
      ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr);
      break;
    }
    (void)disarm();
    ptrace(PTRACE_DETACH, tid_, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(sig)));
  } else if (state_ == State::Stopped) {
    (void)disarm();
    ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
  }
  state_ = State::Released;
}

Status Hold::park() {
  LS_TRY(disarm());   // first: a thread let go on a failure below must not trap again
  auto mem = proc::Memory::open(tgid_);
  if (!mem) return mem.status();
  auto gadget = proc::find_syscall_gadget(tgid_, *mem);
  if (!gadget) return gadget.status();
  if (ptrace(PTRACE_GETSIGMASK, tid_, sizeof saved_mask_, &saved_mask_) != 0)
    return error("thread {}: cannot read its signal mask: {}", tid_, std::strerror(errno));
  if (record_) {   // before anything changes: a rescuer must find it whole
    record_->regs = saved_regs_;
    record_->mask = saved_mask_;
    record_->gadget = gadget->value();
    record_->parked = true;
  }
  uint64_t all = ~uint64_t{0};
  arch::Registers regs = saved_regs_;
  arch::load_syscall(regs, gadget->value(), SYS_pause, {0, 0, 0, 0, 0, 0});
  if (ptrace(PTRACE_SETSIGMASK, tid_, sizeof all, &all) != 0 || !arch::write_registers(tid_, regs)) {
    Status s = error("thread {}: cannot park it: {}", tid_, std::strerror(errno));
    ptrace(PTRACE_SETSIGMASK, tid_, sizeof saved_mask_, &saved_mask_);
    (void)arch::write_registers(tid_, saved_regs_);
    return s;
  }
  ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
  state_ = State::Parked;
  return {};
}

Status Hold::release() {
  if (state_ != State::Parked) return {};
  state_ = State::Released;
  if (ptrace(PTRACE_SEIZE, tid_, nullptr, nullptr) != 0) {
    if (errno == ESRCH) return {};   // it was killed meanwhile
    return error("thread {}: cannot seize it again to release it: {}", tid_, std::strerror(errno));
  }
  ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr);
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(tid_, &status, __WALL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status)) return {};
    if ((status >> 16) == PTRACE_EVENT_STOP) break;
    // Every signal is blocked while parked: nothing else can stop it. Wait for the interrupt.
    ptrace(PTRACE_CONT, tid_, nullptr, nullptr);
  }
  Status s;
  if (!arch::write_registers(tid_, saved_regs_) ||
      ptrace(PTRACE_SETSIGMASK, tid_, sizeof saved_mask_, &saved_mask_) != 0)
    s = error("thread {}: cannot give it back its registers: {}", tid_, std::strerror(errno));
  ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
  return s;
}

Result<bool> rescue(const HoldRecord& r, std::chrono::milliseconds limit) {
  const pid_t tid = r.tid;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) {
    if (errno == ESRCH) return false;   // it ended
    if (errno != EPERM || std::chrono::steady_clock::now() > deadline)
      return error("thread {}: cannot seize it to mend it: {}", tid, std::strerror(errno));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));   // an apply has it
  }
  ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
  int sig = 0;
  for (;;) {
    int status = 0;
    pid_t got = ::waitpid(tid, &status, __WALL);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 || WIFEXITED(status) || WIFSIGNALED(status)) return false;
    if ((status >> 16) == PTRACE_EVENT_STOP) break;
    sig = WSTOPSIG(status);   // a signal on its way: given back at detach
    ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
    break;
  }
  Status s;
  bool unparked = false;
  if (!arch::clear_exec_breakpoint(tid))
    s = error("thread {}: cannot clear its hardware breakpoint: {}", tid, std::strerror(errno));
  arch::Registers now;
  uint64_t mask = 0;
  const bool at_gadget = arch::read_registers(tid, now) && (arch::pc(now) == r.gadget ||
                                                            arch::pc(now) == r.gadget + arch::kSyscallInstructionSize);
  // Every signal park() blocked, but SIGKILL and SIGSTOP (the kernel never keeps them
  // blocked) and SIGTRAP (found unblocked after an apply: a forced trap unblocks it).
  auto bit = [](int signo) { return uint64_t{1} << (signo - 1); };
  const uint64_t may_be_unblocked = bit(SIGKILL) | bit(SIGSTOP) | bit(SIGTRAP);
  if (r.parked && at_gadget && ptrace(PTRACE_GETSIGMASK, tid, sizeof mask, &mask) == 0 &&
      (mask | may_be_unblocked) == ~uint64_t{0}) {
    unparked = arch::write_registers(tid, r.regs) &&
               ptrace(PTRACE_SETSIGMASK, tid, sizeof r.mask, &r.mask) == 0;
    if (!unparked) s = error("thread {}: cannot give it back its registers: {}", tid, std::strerror(errno));
  }
  ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(sig)));
  if (!s.ok()) return s;
  return unparked;
}

}  // namespace ls::manager
