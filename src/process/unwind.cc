#include "process/unwind.h"

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <fmt/format.h>
#include <sys/uio.h>

#include <cstdlib>
#include <cstring>

namespace ls::proc {

struct Unwinder::Walking {
  pid_t tid = 0;
  const arch::Registers* regs = nullptr;
  const ReadWord* read = nullptr;
  StackWalk result;
  uint64_t caller_sp = 0;       // what the CFI of the last frame says its caller's sp is
  bool last_has_no_caller = false;
};

namespace {

constexpr unsigned kRsp = 7, kRip = 16;   // DWARF register numbers on x86-64

// The CFI row for `pc` of a frame, nullptr when no module or no CFI covers it; free()
// the result. A return address is looked up one byte back: the call it follows may be
// the last instruction of its function.
Dwarf_Frame* cfi_row(Dwfl* dwfl, const Frame& f) {
  Dwarf_Addr at = f.pc.value() - (f.activation ? 0 : 1);
  Dwfl_Module* mod = dwfl_addrmodule(dwfl, at);
  if (!mod) return nullptr;
  Dwarf_Addr bias = 0;
  Dwarf_Frame* row = nullptr;
  if (Dwarf_CFI* eh = dwfl_module_eh_cfi(mod, &bias); eh && dwarf_cfi_addrframe(eh, at - bias, &row) == 0)
    return row;
  if (Dwarf_CFI* dbg = dwfl_module_dwarf_cfi(mod, &bias); dbg && dwarf_cfi_addrframe(dbg, at - bias, &row) == 0)
    return row;
  return nullptr;
}

}  // namespace

// The Dwfl_Thread_Callbacks: one thread at a time, the one being walked, with the
// registers and memory reader walk() was given.
struct UnwindCallbacks {
  static pid_t next_thread(Dwfl*, void* arg, void** thread_arg) {
    auto* u = static_cast<Unwinder*>(arg);
    if (*thread_arg || !u->current_) return 0;
    *thread_arg = u->current_;
    return u->current_->tid;
  }

  static bool memory_read(Dwfl*, Dwarf_Addr addr, Dwarf_Word* result, void* arg) {
    auto* u = static_cast<Unwinder*>(arg);
    uint64_t v = 0;
    if (!u->current_ || !(*u->current_->read)(TargetAddr(addr), &v)) return false;
    *result = v;
    return true;
  }

  static bool set_initial_registers(Dwfl_Thread* thread, void* thread_arg) {
    const auto& r = *static_cast<Unwinder::Walking*>(thread_arg)->regs;
    std::array<uint64_t, arch::kDwarfRegisters> words = arch::dwarf_registers(r);
    Dwarf_Word regs[arch::kDwarfRegisters];
    std::copy(words.begin(), words.end(), regs);
    if (!dwfl_thread_state_registers(thread, 0, arch::kDwarfRegisters, regs)) return false;
    dwfl_thread_state_register_pc(thread, arch::pc(r));
    return true;
  }

  // One frame: record it, and accept it only if the step that led here followed the
  // previous frame's CFI (its sp is the CFA that CFI gave). Then read this frame's own
  // CFI for the next step.
  static int on_frame(Dwfl_Frame* state, void* arg) {
    auto* u = static_cast<Unwinder*>(arg);
    Unwinder::Walking& w = *u->current_;
    auto& frames = w.result.frames;
    Dwarf_Addr pc = 0;
    bool activation = false;
    Dwarf_Word sp = 0;
    if (!dwfl_frame_pc(state, &pc, &activation) || dwfl_frame_reg(state, kRsp, &sp) != 0) {
      w.result.stopped = fmt::format("no pc or sp above pc {}", frames.empty() ? TargetAddr() : frames.back().pc);
      return DWARF_CB_ABORT;
    }
    if (!frames.empty() && sp != w.caller_sp) {
      w.result.stopped = fmt::format("unwinding past pc {} in {} did not follow its CFI", frames.back().pc,
                                     u->file_of(frames.back().pc));
      return DWARF_CB_ABORT;
    }
    frames.push_back({TargetAddr(pc), TargetAddr(sp), activation});

    const Unwinder::Row& row = u->row(frames.back());
    if (!row.has_cfi) {
      w.result.stopped = fmt::format("no CFI for pc {} in {}", frames.back().pc, u->file_of(frames.back().pc));
      return DWARF_CB_ABORT;
    }
    Dwarf_Word base = 0;
    if (!row.usable || dwfl_frame_reg(state, row.cfa_register, &base) != 0) {
      // A DWARF expression (PLT stubs, signal trampolines): not followed here.
      w.result.stopped = fmt::format("the CFI for pc {} in {} is not a register plus an offset", frames.back().pc,
                                     u->file_of(frames.back().pc));
      return DWARF_CB_ABORT;
    }
    w.caller_sp = base + row.cfa_offset;
    w.last_has_no_caller = row.no_caller;
    return DWARF_CB_OK;
  }
};

namespace {

const Dwfl_Callbacks kProcCallbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = nullptr,
    .debuginfo_path = nullptr,
};

const Dwfl_Thread_Callbacks kThreadCallbacks = {
    .next_thread = UnwindCallbacks::next_thread,
    .get_thread = nullptr,
    .memory_read = UnwindCallbacks::memory_read,
    .set_initial_registers = UnwindCallbacks::set_initial_registers,
    .detach = nullptr,
    .thread_detach = nullptr,
};

int load_cfi(Dwfl_Module* mod, void**, const char*, Dwarf_Addr, void*) {
  Dwarf_Addr bias;
  (void)dwfl_module_eh_cfi(mod, &bias);
  return DWARF_CB_OK;
}

}  // namespace

Result<std::unique_ptr<Unwinder>> Unwinder::open(pid_t pid) {
  std::unique_ptr<Unwinder> u(new Unwinder());
  u->dwfl_ = dwfl_begin(&kProcCallbacks);
  if (!u->dwfl_) return Status::error(fmt::format("libdwfl: {}", dwfl_errmsg(-1)));
  dwfl_report_begin(u->dwfl_);
  int err = dwfl_linux_proc_report(u->dwfl_, pid);
  dwfl_report_end(u->dwfl_, nullptr, nullptr);
  if (err != 0) return Status::error(fmt::format("reading the modules of process {}: {}", pid,
                                                 err > 0 ? std::strerror(err) : dwfl_errmsg(-1)));
  if (!dwfl_attach_state(u->dwfl_, nullptr, pid, &kThreadCallbacks, u.get()))
    return Status::error(fmt::format("libdwfl cannot unwind process {}: {}", pid, dwfl_errmsg(-1)));
  // Open every file and find its CFI now, not in the first walk inside the pause.
  dwfl_getmodules(u->dwfl_, load_cfi, nullptr, 0);
  return u;
}

Unwinder::~Unwinder() {
  if (dwfl_) dwfl_end(dwfl_);
}

const Unwinder::Row& Unwinder::row(const Frame& f) {
  auto [it, fresh] = rows_.try_emplace(f.pc.value() << 1 | f.activation);
  if (!fresh) return it->second;
  Row& r = it->second;
  Dwarf_Frame* cfi = cfi_row(dwfl_, f);
  if (!cfi) return r;
  r.has_cfi = true;
  Dwarf_Op* ops = nullptr;
  size_t nops = 0;
  if (dwarf_frame_cfa(cfi, &ops, &nops) == 0 && nops == 1 && ops[0].atom == DW_OP_bregx) {
    r.usable = true;
    r.cfa_register = static_cast<unsigned>(ops[0].number);
    r.cfa_offset = static_cast<int64_t>(ops[0].number2);
  }
  Dwarf_Op ra_mem[3];
  Dwarf_Op* ra_ops = nullptr;
  size_t ra_nops = 0;
  r.no_caller = dwarf_frame_register(cfi, kRip, ra_mem, &ra_ops, &ra_nops) == 0 && ra_nops == 0 && ra_ops == ra_mem;
  std::free(cfi);
  return r;
}

PageReader::PageReader(pid_t pid) : pid_(pid), bytes_(kPages * kPage) {}

void PageReader::forget() {
  for (auto& p : page_) p = 0;
}

bool PageReader::read(TargetAddr at, uint64_t* word) {
  uint64_t a = at.value(), page = a & ~uint64_t{kPage - 1};
  if (page == 0 || a - page > kPage - sizeof *word) {   // null page, or a word across two pages
    iovec l{word, sizeof *word}, r{reinterpret_cast<void*>(a), sizeof *word};
    return process_vm_readv(pid_, &l, 1, &r, 1, 0) == sizeof *word;
  }
  size_t slot = kPages;
  for (size_t i = 0; i < kPages; ++i)
    if (page_[i] == page) slot = i;
  if (slot == kPages) {
    slot = next_;
    next_ = (next_ + 1) % kPages;
    iovec l{bytes_.data() + slot * kPage, kPage}, r{reinterpret_cast<void*>(page), kPage};
    page_[slot] = 0;
    if (process_vm_readv(pid_, &l, 1, &r, 1, 0) != static_cast<ssize_t>(kPage)) return false;
    page_[slot] = page;
  }
  std::memcpy(word, bytes_.data() + slot * kPage + (a - page), sizeof *word);
  return true;
}

std::string Unwinder::file_of(TargetAddr pc) const {
  Dwfl_Module* mod = dwfl_addrmodule(dwfl_, pc.value());
  const char* file = nullptr;
  if (mod) dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, &file, nullptr);
  if (file) return file;
  if (mod) return dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  return "no file (anonymous memory: code of an earlier update, or generated code)";
}

StackWalk Unwinder::walk(pid_t tid, const arch::Registers& regs, const ReadWord& read) {
  Walking w;
  w.tid = tid;
  w.regs = &regs;
  w.read = &read;
  current_ = &w;
  int rc = dwfl_getthread_frames(dwfl_, tid, UnwindCallbacks::on_frame, this);
  current_ = nullptr;
  if (rc == 0 && w.result.stopped.empty() && !w.result.frames.empty() && w.last_has_no_caller) {
    w.result.complete = true;
  } else if (w.result.stopped.empty()) {
    TargetAddr last = w.result.frames.empty() ? TargetAddr(arch::pc(regs)) : w.result.frames.back().pc;
    w.result.stopped = fmt::format("unwinding past pc {} in {} failed: {}", last, file_of(last),
                                   rc == 0 ? "its CFI names a caller, but none was found" : dwfl_errmsg(-1));
  }
  return std::move(w.result);
}

}  // namespace ls::proc
