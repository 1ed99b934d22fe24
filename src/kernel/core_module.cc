#include "kernel/core_module.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "arch/target.h"
#include "livesplice.h"   // kernel/uapi: the ioctl interface

namespace ls::kernel {

namespace {

// The non-exported kernel symbols livesplice.ko takes as parameters (kernel/core/main.c).
constexpr const char* kCoreParams[] = {"text_poke", "text_mutex", "stop_machine_cpuslocked", "__module_address",
                                       "idle_task", "find_module"};

Status from_result(const char* what, const std::string& id, int err, const ls_k_result& r,
                   Outcome& out) {
  out.pause_ns = r.pause_ns;
  out.work_ns = r.work_ns;
  out.attempts = r.attempts;
  out.blocked_pid = r.blocked_pid;
  out.blocked_comm = std::string(r.blocked_comm, strnlen(r.blocked_comm, sizeof(r.blocked_comm)));
  out.blocked_addr = TargetAddr(r.blocked_addr);
  if (err == 0) return {};
  std::string msg(r.message, strnlen(r.message, sizeof(r.message)));
  if (msg.empty()) msg = strerror(err);
  // Blocked on every attempt, or the bytes are not what was matched: not safe now.
  Exit code = (err == EBUSY || err == ESTALE) ? Exit::Unsafe : Exit::ToolError;
  return Status::error(fmt::format("{} {}: {}", what, id, msg), code);
}

}  // namespace

Status load_core(const Context& ctx, const std::string& ko, const Kallsyms& syms,
                 const std::string& extra) {
  std::string params = extra.empty() ? "" : extra + " ";
  for (const char* name : kCoreParams) {
    auto s = syms.unique(name, "vmlinux");
    if (!s) return std::move(s).status().context("loading livesplice.ko");
    params += fmt::format("{}={:#x} ", name, (*s)->addr.value());
  }
  int fd = ::open(ko.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error("{}: {}", ko, strerror(errno));
  long rc = syscall(SYS_finit_module, fd, params.c_str(), 0);
  int err = errno;
  ::close(fd);
  if (rc != 0 && err == EEXIST) {
    ctx.note("livesplice.ko is already loaded");
    return {};
  }
  if (rc != 0)
    return error("{}: finit_module: {} (the kernel log says more)", ko, strerror(err));
  ctx.note(fmt::format("loaded {} with {}", ko, params));
  return {};
}

Result<uint32_t> splice_offset(const Kcore& mem, const Kallsyms& syms, const KSymbol& fn) {
  const arch::Target& arch = arch::host();
  // The landing pad and ftrace's site, whichever the function has.
  std::vector<uint8_t> b(arch.entry_head_size + arch.kernel_jump_size);
  if (fn.size != 0 && fn.size < b.size())
    return error("{} at {}: only {} bytes long", fn.name, fn.addr, fn.size);
  LS_TRY(mem.read(fn.addr, b));
  auto off = static_cast<uint32_t>(arch.entry_landing(b));
  auto fentry = arch.fentry_site(std::span(b).subspan(off));
  if (fentry && !fentry->call_to) return off + fentry->length;
  if (fentry) {
    // A traced function: the fentry site calls into ftrace.
    TargetAddr to = fn.addr + off + *fentry->call_to;
    const KSymbol* callee = syms.at_or_below(to);
    if (callee && (callee->name == "__fentry__" || callee->name.starts_with("ftrace")))
      return off + fentry->length;
  }
  return off;  // no fentry site (notrace): the jump goes at the entry
}

Result<Redirect> plan_redirect(const Kcore& mem, const Kallsyms& syms, const KSymbol& old_fn,
                               const KSymbol& new_fn) {
  // The core writes text only; the kallsyms type is the first guard against a data symbol.
  if (!old_fn.text() || !new_fn.text())
    return error("{} -> {}: both must be text symbols (kallsyms types '{}', '{}')", old_fn.name,
                 new_fn.name, old_fn.type, new_fn.type);
  Redirect r;
  r.label = old_fn.name;
  r.old_fn = old_fn.addr;
  r.new_fn = new_fn.addr;
  auto off = splice_offset(mem, syms, old_fn);
  if (!off) return off.status();
  r.offset = *off;
  const uint64_t jump = arch::host().kernel_jump_size;
  if (old_fn.size != 0 && r.offset + jump > old_fn.size)
    return error("{} at {}: {} bytes, too short for a jump at +{}", old_fn.name, old_fn.addr,
                 old_fn.size, r.offset);
  r.expect.resize(jump);
  LS_TRY(mem.read(old_fn.addr + r.offset, r.expect));
  return r;
}

Result<CoreDevice> CoreDevice::open() {
  int fd = ::open(LS_K_DEVICE, O_RDWR | O_CLOEXEC);
  if (fd < 0) return error("{}: {} (is livesplice.ko loaded?)", LS_K_DEVICE, strerror(errno));
  return CoreDevice(fd);
}

CoreDevice::~CoreDevice() {
  if (fd_ >= 0) ::close(fd_);
}

Status CoreDevice::apply(const std::string& id, std::span<const Redirect> funcs, Retry retry,
                         Outcome& out, TargetAddr code, bool coming) {
  ls_k_apply a{};
  if (id.empty() || id.size() >= sizeof(a.id)) return error("update id '{}': 1 to {} characters", id, sizeof(a.id) - 1);
  memcpy(a.id, id.data(), id.size());
  std::vector<ls_k_func> fs(funcs.size());
  for (size_t i = 0; i < funcs.size(); ++i) {
    const Redirect& r = funcs[i];
    if (r.expect.empty() || r.expect.size() > sizeof(fs[i].expect))
      return error("{}: {} expected bytes", r.label, r.expect.size());
    fs[i].old_addr = r.old_fn.value();
    fs[i].new_addr = r.new_fn.value();
    fs[i].offset = r.offset;
    fs[i].len = static_cast<uint32_t>(r.expect.size());
    memcpy(fs[i].expect, r.expect.data(), r.expect.size());
  }
  a.funcs = reinterpret_cast<uintptr_t>(fs.data());
  a.nfuncs = static_cast<uint32_t>(fs.size());
  a.retries = retry.retries;
  a.retry_delay_ms = retry.delay_ms;
  a.code = code.value();
  a.flags = coming ? LS_K_APPLY_COMING : 0;
  int err = ioctl(fd_, LS_K_APPLY, &a) == 0 ? 0 : errno;
  return from_result("apply", id, err, a.result, out);
}

Status CoreDevice::undo(const std::string& id, Retry retry, Outcome& out) {
  ls_k_undo u{};
  if (id.empty() || id.size() >= sizeof(u.id)) return error("update id '{}': 1 to {} characters", id, sizeof(u.id) - 1);
  memcpy(u.id, id.data(), id.size());
  u.retries = retry.retries;
  u.retry_delay_ms = retry.delay_ms;
  int err = ioctl(fd_, LS_K_UNDO, &u) == 0 ? 0 : errno;
  return from_result("undo", id, err, u.result, out);
}

Result<std::vector<Applied>> CoreDevice::list() {
  std::vector<ls_k_listed> buf(64);
  for (;;) {
    ls_k_list l{};
    l.entries = reinterpret_cast<uintptr_t>(buf.data());
    l.capacity = static_cast<uint32_t>(buf.size());
    if (ioctl(fd_, LS_K_LIST, &l) != 0) return error("{}: list: {}", LS_K_DEVICE, strerror(errno));
    if (l.count > buf.size()) {
      buf.resize(l.count);
      continue;
    }
    std::vector<Applied> out;
    for (uint32_t i = 0; i < l.count; ++i) {
      const ls_k_listed& e = buf[i];
      Applied a;
      a.id = std::string(e.id, strnlen(e.id, sizeof(e.id)));
      a.old_fn = TargetAddr(e.old_addr);
      a.new_fn = TargetAddr(e.new_addr);
      a.offset = e.offset;
      a.original.assign(e.original, e.original + std::min<uint32_t>(e.len, sizeof(e.original)));
      a.pause_ns = e.pause_ns;
      a.code = TargetAddr(e.code);
      a.code_size = e.code_size;
      a.module = std::string(e.module, strnlen(e.module, sizeof(e.module)));
      out.push_back(std::move(a));
    }
    return out;
  }
}

namespace {

// One LS_K_PEND, WAIT, FAIL or CANCEL; the core's message when it refuses.
Status pending_call(int fd, unsigned long cmd, const char* what, const std::string& id,
                    const std::string& module, const std::string& message = {}) {
  ls_k_pending p{};
  if (id.empty() || id.size() >= sizeof(p.id)) return error("update id '{}': 1 to {} characters", id, sizeof(p.id) - 1);
  if (module.size() >= sizeof(p.module)) return error("module name '{}' is too long", module);
  memcpy(p.id, id.data(), id.size());
  memcpy(p.module, module.data(), module.size());
  memcpy(p.message, message.data(), std::min(message.size(), sizeof(p.message) - 1));
  if (ioctl(fd, cmd, &p) == 0) return {};
  int err = errno;
  std::string msg(p.message, strnlen(p.message, sizeof(p.message)));
  if (msg.empty() || cmd == LS_K_FAIL) msg = strerror(err);
  return Status::error(fmt::format("{} {}: {}", what, id, msg), err == ECANCELED ? Exit::NoChange : Exit::ToolError);
}

}  // namespace

Status CoreDevice::pend(const std::string& id, const std::string& module) {
  return pending_call(fd_, LS_K_PEND, "pend", id, module);
}

Status CoreDevice::wait(const std::string& id) {
  return pending_call(fd_, LS_K_WAIT, "wait for", id, {});   // killable only: no EINTR
}

Status CoreDevice::fail(const std::string& id, const std::string& why) {
  return pending_call(fd_, LS_K_FAIL, "fail", id, {}, why);
}

Status CoreDevice::cancel(const std::string& id) {
  return pending_call(fd_, LS_K_CANCEL, "cancel", id, {});
}

Result<std::vector<Pending>> CoreDevice::pending() {
  std::vector<ls_k_pending> buf(16);
  for (;;) {
    ls_k_pending_list l{};
    l.entries = reinterpret_cast<uintptr_t>(buf.data());
    l.capacity = static_cast<uint32_t>(buf.size());
    if (ioctl(fd_, LS_K_PENDING_LIST, &l) != 0) return error("{}: pending list: {}", LS_K_DEVICE, strerror(errno));
    if (l.count > buf.size()) {
      buf.resize(l.count);
      continue;
    }
    std::vector<Pending> out;
    for (uint32_t i = 0; i < l.count; ++i) {
      const ls_k_pending& e = buf[i];
      out.push_back({std::string(e.id, strnlen(e.id, sizeof(e.id))),
                     std::string(e.module, strnlen(e.module, sizeof(e.module))), e.waiter_pid, e.state,
                     std::string(e.message, strnlen(e.message, sizeof(e.message)))});
    }
    return out;
  }
}

}  // namespace ls::kernel
