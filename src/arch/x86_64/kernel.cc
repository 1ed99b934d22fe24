// The x86-64 kernel's forms. First its own run-time rewrites of its code, as data for
// run-pre matching (arch::Rewrites): what an instruction that names one of these
// symbols may look like once the kernel has booted or loaded the module holding it.
//
// What is hard: the kernel rewrites its text at boot and module load according to the
// CPU and the command line (arch/x86/kernel/alternative.c, ftrace, static calls), so the
// same build runs as different bytes on different machines. Each form here is one the
// kernel writes for the symbol's instruction and nothing else: a `call __fentry__` may be
// the 5-byte NOP or a call into an ftrace trampoline, never `ret`. Forms cover Debian's
// 6.1 configuration (RETPOLINE, RETHUNK, MITIGATION_ITS, SLS; no IBT, no call depth
// tracking). Alternatives and jump labels are not relocations: their sites come from
// the kernel's own tables (kernel_table_sites).
//
// kernel_rewrites: __fentry__, __x86_return_thunk, __x86_indirect_thunk_<reg>, static
// call trampolines (__SCT__*), static_cpu_has's jump into .altinstr_aux.
//
// The alternatives and jump labels in the update's replaced functions, from the tables
// `create --kernel` carries beside their pre code (`.livesplice.pre.altinstructions` with
// `.livesplice.pre.altinstr_replacement`, `.livesplice.pre__jump_table`), into
// `rw.sites`: each site as the kernel may leave it (arch/x86/kernel/alternative.c's
// apply_alternatives and optimize_nops, jump_label.c's __jump_label_patch):
//   alternative   the original instructions (as assembled, or with their single-byte
//                 NOPs merged), or a replacement as copied there: a lone 5-byte call
//                 still reaching its destination, a leading 5-byte jmp recomputed
//                 (a 2-byte jmp + NOP3 when it reaches forward), padded with NOPs to the
//                 site's length, runs of them merged. A replacement holding any other
//                 relocation is left out: the kernel copies it unadjusted, so such a
//                 site only matches as assembled.
//   jump label    the NOP of the site's length (2 or 5) or the jmp of that length to
//                 the entry's target, whichever pre has.
// A table entry that does not fit its layout is a tool error.
//
// Each entry says which kernel code writes it; the encodings are the instruction set's,
// the choices the kernel's. Then where ftrace's site is at a function's entry, and the
// relocations arch/x86/kernel/module.c applies.
#include <elf.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "arch/x86_64/target.h"
#include "update/format.h"

namespace ls::arch::x86_64 {
namespace {

using Bytes = std::vector<uint8_t>;

const Bytes kNop5{0x0f, 0x1f, 0x44, 0x00, 0x00};
const Bytes kRetInt3{0xc3, 0xcc, 0xcc, 0xcc, 0xcc};
const Bytes kLfence{0x0f, 0xae, 0xe8};

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// `call *%reg` (modrm 0xd0 | reg) or `jmp *%reg` (0xe0 | reg), REX.B for r8-r15.
Bytes indirect(uint8_t modrm, int reg) {
  if (reg >= 8) return {0x41, 0xff, static_cast<uint8_t>(modrm | (reg - 8))};
  return {0xff, static_cast<uint8_t>(modrm | reg)};
}

// A retpoline thunk call or jump, as alternative.c's patch_retpoline leaves it when the
// CPU needs no retpoline (the indirect branch, an int3 after a jump, the rest single-byte
// NOPs that optimize_nops merges into one long NOP) or needs the lfence variant (when it
// fits). A thunk the CPU does need stays a call to the thunk; an ITS thunk is a branch
// out of the function.
std::vector<RunForm> retpoline_forms(int reg) {
  const Bytes nop3{0x0f, 0x1f, 0x00}, nop2{0x66, 0x90}, nop1{0x90}, int3{0xcc};
  std::vector<RunForm> f;
  bool low = reg < 8;
  Bytes call = indirect(0xd0, reg), jmp = indirect(0xe0, reg);
  f.push_back({"call *%reg", {0xe8}, cat({call, low ? nop3 : nop2})});
  f.push_back({"jmp *%reg; int3", {0xe9}, cat({jmp, int3, low ? nop2 : nop1})});
  if (low) {
    f.push_back({"lfence; call *%reg", {0xe8}, cat({kLfence, call})});
    f.push_back({"lfence; jmp *%reg", {0xe9}, cat({kLfence, jmp})});
  }
  f.push_back({"call to an ITS thunk", {0xe8}, {0xe8}, RunForm::Branch::Outside});
  f.push_back({"jmp to an ITS thunk", {0xe9}, {0xe9}, RunForm::Branch::Outside});
  // Jcc.d32 to the thunk: the inverted Jcc.d8 over `jmp *%reg; int3` (+ a NOP).
  for (uint8_t cc = 0; cc < 16; ++cc) {
    Bytes skip{static_cast<uint8_t>(0x70 + (cc ^ 1)), 0x04};
    f.push_back({"jcc over jmp *%reg", {0x0f, static_cast<uint8_t>(0x80 + cc)},
                 cat({skip, jmp, int3, low ? nop1 : Bytes{}})});
  }
  return f;
}

// x86_nops (asm/nops.h, 64-bit): the NOP of each length up to 8 the kernel writes.
const std::array<Bytes, 9> kNops{Bytes{},
                                 Bytes{0x90},
                                 Bytes{0x66, 0x90},
                                 Bytes{0x0f, 0x1f, 0x00},
                                 Bytes{0x0f, 0x1f, 0x40, 0x00},
                                 Bytes{0x0f, 0x1f, 0x44, 0x00, 0x00},
                                 Bytes{0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00},
                                 Bytes{0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00},
                                 Bytes{0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00}};

// add_nops: `n` bytes of NOPs, the longest first.
void add_nops(Bytes& b, size_t at, size_t n) {
  while (n > 0) {
    size_t k = std::min<size_t>(n, 8);
    std::copy(kNops[k].begin(), kNops[k].end(), b.begin() + static_cast<ptrdiff_t>(at));
    at += k;
    n -= k;
  }
}

// optimize_nops: instruction by instruction, each run of two or more single-byte NOPs
// becomes add_nops of its length. Stops where the code does not decode, as the kernel's.
Bytes optimize_nops(Bytes b) {
  for (size_t i = 0; i < b.size();) {
    auto d = decode_one(b, i);
    if (!d) break;
    if (d->length == 1 && b[i] == 0x90) {
      size_t j = i;
      while (j < b.size() && b[j] == 0x90) ++j;
      if (j - i > 1) add_nops(b, i, j - i);
      i = j;
    } else {
      i += d->length;
    }
  }
  return b;
}

// The tables of one update, as read.
struct Tables {
  const elf::Object& u;
  // Where a data relocation points: (section, offset); PC-relative fields of tables
  // are `target - .`, so the addend is the whole story.
  struct Place {
    bool known = false;
    uint32_t section = 0;
    int64_t offset = 0;
  };
  Place target(const elf::Reloc* r) const {
    if (!r || r->symbol == 0 || !u.symbol(r->symbol).in_section()) return {};
    const elf::Symbol& s = u.symbol(r->symbol);
    return {true, s.section, static_cast<int64_t>(s.value) + r->addend};
  }
  bool pre_code(uint32_t sec) const {
    const elf::Section& s = u.section(sec);
    return update::carries_object_section(s.name, update::kPrePrefix) && s.exec() && !s.nobits();
  }
  static const elf::Reloc* at(const elf::Section& s, uint64_t off) {
    for (const auto& r : s.relocs)
      if (r.offset == off && r.kind != elf::RelocKind::None) return &r;
    return nullptr;
  }
};

// A call or jump field of code in section `code_sec` at `field` (relocation `r`) as a
// form's field: inside function `fn` (an offset there) or a symbol's address. Nothing
// when the relocation is not a plain rel32.
std::optional<SiteForm::Field> branch_field(const Tables& t, const elf::Reloc& r, uint32_t fn, uint64_t at) {
  if ((r.kind != elf::RelocKind::PcRel32 && r.kind != elf::RelocKind::Plt32) || r.width != 4) return std::nullopt;
  SiteForm::Field f;
  f.at = at;
  const elf::Symbol& s = t.u.symbol(r.symbol);
  if (s.in_section() && s.section == fn) {
    f.target = static_cast<int64_t>(s.value) + r.addend + 4;
  } else if (!s.in_section()) {   // a run symbol
    f.symbol = r.symbol;
    f.target = r.addend + 4;
  } else {
    return std::nullopt;   // into other carried code: no run address to reveal
  }
  return f;
}

Bytes slice(std::span<const uint8_t> b, uint64_t off, uint64_t n) {
  return Bytes(b.begin() + static_cast<ptrdiff_t>(off), b.begin() + static_cast<ptrdiff_t>(off + n));
}

// One .altinstructions entry (struct alt_instr: instr PC32, repl PC32, cpuid u16,
// instrlen u8, replacementlen u8) as the site's forms.
Status alternative(const Tables& t, const elf::Section& table, uint64_t e, RewrittenSite& site,
                   uint32_t& fn) {
  const elf::Reloc* ri = Tables::at(table, e);
  const elf::Reloc* rr = Tables::at(table, e + 4);
  auto instr = t.target(ri);
  auto repl = t.target(rr);
  if (!instr.known || !repl.known || !t.pre_code(instr.section) || instr.offset < 0 || repl.offset < 0)
    return error("{}+{:#x}: an alternative whose original code is not carried pre code", table.name, e);
  fn = instr.section;
  uint16_t cpuid = 0;
  std::memcpy(&cpuid, table.bytes.data() + e + 8, sizeof cpuid);
  const unsigned len = table.bytes[e + 10], rlen = table.bytes[e + 11];
  const elf::Section& code = t.u.section(fn);
  const elf::Section& rsec = t.u.section(repl.section);
  const auto off = static_cast<uint64_t>(instr.offset), roff = static_cast<uint64_t>(repl.offset);
  if (off + len > code.bytes.size() || roff + rlen > rsec.bytes.size() || rlen > len)
    return error("{}+{:#x}: an alternative of {} bytes at {}+{:#x} (replacement {} bytes) does not fit", table.name,
                 e, len, code.name, off, rlen);
  site.what = fmt::format("alternative (feature {}*32+{}{})", (cpuid & 0x7fff) >> 5, cpuid & 31,
                          cpuid & 0x8000 ? ", inverted" : "");
  site.offset = off;
  site.size = len;
  // The original: as assembled, and with its NOPs merged (optimize_nops runs on every
  // site); its relocations, if any, become fields of the merged form.
  Bytes orig = slice(code.bytes, off, len);
  std::vector<SiteForm::Field> orig_fields;
  bool orig_plain = true;
  for (const auto& r : code.relocs)
    if (r.kind != elf::RelocKind::None && r.offset + r.width > off && r.offset < off + len) {
      auto f = r.offset >= off ? branch_field(t, r, fn, r.offset - off) : std::nullopt;
      if (f) orig_fields.push_back(*f);
      else orig_plain = false;
    }
  auto add = [&](std::string name, Bytes b, std::vector<SiteForm::Field> fields) {
    for (const auto& f : site.forms)
      if (f.bytes == b && f.fields == fields) return;
    site.forms.push_back({std::move(name), std::move(b), std::move(fields)});
  };
  if (orig_plain) {
    if (orig_fields.empty()) add("original", orig, {});
    add("original, NOPs merged", optimize_nops(orig), orig_fields);
  }
  // The replacement, as apply_alternatives copies it.
  Bytes b = slice(rsec.bytes, roff, rlen);
  std::vector<const elf::Reloc*> relocs;
  for (const auto& r : rsec.relocs)
    if (r.kind != elf::RelocKind::None && r.offset + r.width > roff && r.offset < roff + rlen) relocs.push_back(&r);
  const elf::Reloc* lead = relocs.size() == 1 && relocs[0]->offset == roff + 1 ? relocs[0] : nullptr;
  auto field = lead ? branch_field(t, *lead, fn, 1) : std::nullopt;
  auto pad = [&](Bytes x, std::vector<SiteForm::Field> fields, std::string name) {
    x.resize(len, 0x90);
    add(std::move(name), optimize_nops(std::move(x)), std::move(fields));
  };
  if (relocs.empty() && !(rlen == 5 && (b[0] == 0xe8 || b[0] == 0xe9 || b[0] == 0xeb))) {
    pad(b, {}, "replacement");
  } else if (rlen == 5 && b[0] == 0xe8 && field) {
    pad(b, {*field}, "replacement call");
  } else if (rlen == 5 && b[0] == 0xe9 && field) {
    // recompute_jump: a 2-byte jmp (+ NOP3) when the target is ahead within reach of
    // one (the kernel's test never takes a backward 2-byte jump).
    auto jmp8 = [&](SiteForm::Field f) {
      Bytes x{0xeb, 0x00};
      x.insert(x.end(), kNops[3].begin(), kNops[3].end());
      f.width = 1;
      pad(x, {f}, "replacement jmp (short)");
    };
    if (field->symbol == 0) {
      const int64_t n = field->target - static_cast<int64_t>(off);
      if (n >= 0 && n - 2 <= 127) jmp8(*field);
      else pad(b, {*field}, "replacement jmp");
    } else {   // its distance is the run address's: either
      jmp8(*field);
      pad(b, {*field}, "replacement jmp");
    }
  }
  return {};
}

// One __jump_table entry (struct jump_entry: code PC32, target PC32, key PC64).
Status jump_label(const Tables& t, const elf::Section& table, uint64_t e, RewrittenSite& site, uint32_t& fn) {
  const elf::Reloc* rc = Tables::at(table, e);
  const elf::Reloc* rt = Tables::at(table, e + 4);
  auto code = t.target(rc);
  auto to = t.target(rt);
  if (!code.known || !t.pre_code(code.section) || code.offset < 0)
    return error("{}+{:#x}: a jump label whose code is not carried pre code", table.name, e);
  fn = code.section;
  const elf::Section& sec = t.u.section(fn);
  const auto off = static_cast<uint64_t>(code.offset);
  auto d = off < sec.bytes.size() ? decode_one(sec.bytes, off) : std::nullopt;
  if (!d || (d->length != 2 && d->length != 5))
    return error("{}+{:#x}: the jump label at {}+{:#x} is not a 2- or 5-byte instruction", table.name, e, sec.name,
                 off);
  site.what = "jump label";
  site.offset = off;
  site.size = d->length;
  Bytes as = slice(sec.bytes, off, d->length);
  site.forms.push_back({"NOP", kNops[d->length], {}});
  if (to.known && to.section == fn) {   // its other state: the jmp to the entry's target
    Bytes jmp(d->length, 0);
    jmp[0] = d->length == 2 ? 0xeb : 0xe9;
    site.forms.push_back({"jmp", jmp, {SiteForm::Field{1, d->length - 1u, 0, to.offset}}});
  }
  if (as != kNops[d->length] && as[0] != 0xeb && as[0] != 0xe9) site.forms.push_back({"as assembled", as, {}});
  if (as[0] == 0xeb || as[0] == 0xe9) {
    // As assembled, a jmp: it must be the one to the entry's target.
    if (!to.known || to.section != fn) site.forms.clear();
  }
  return {};
}

}  // namespace

Status X86_64::kernel_table_sites(const elf::Object& update, Rewrites& rw) const {
  Tables t{update};
  std::map<uint32_t, std::vector<RewrittenSite>> found;
  for (const elf::Section& sec : update.sections()) {
    const bool alt = sec.name == update::carried_name(update::kPrePrefix, ".altinstructions");
    if (!alt && sec.name != update::carried_name(update::kPrePrefix, "__jump_table")) continue;
    const uint64_t size = alt ? 12 : 16;
    if (sec.bytes.size() % size != 0)
      return error("{}: {} bytes, not a whole number of {}-byte entries", sec.name, sec.bytes.size(), size);
    for (uint64_t e = 0; e < sec.bytes.size(); e += size) {
      RewrittenSite site;
      uint32_t fn = 0;
      if (Status s = alt ? alternative(t, sec, e, site, fn) : jump_label(t, sec, e, site, fn); !s.ok()) return s;
      if (site.size > 0 && !site.forms.empty()) found[fn].push_back(std::move(site));
    }
  }
  // One site per place: alternatives of one place (ALTERNATIVE_2) pool their forms; a
  // site overlapping another otherwise is left to match as assembled.
  for (auto& [fn, sites] : found) {
    std::stable_sort(sites.begin(), sites.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
    std::vector<RewrittenSite> out;
    for (auto& s : sites) {
      if (!out.empty() && out.back().offset == s.offset && out.back().size == s.size && out.back().what != "jump label" &&
          s.what != "jump label") {
        for (auto& f : s.forms)
          if (std::none_of(out.back().forms.begin(), out.back().forms.end(),
                           [&](const auto& g) { return g.bytes == f.bytes && g.fields == f.fields; }))
            out.back().forms.push_back(std::move(f));
        out.back().what += " / " + s.what;
      } else if (!out.empty() && out.back().offset + out.back().size > s.offset) {
        continue;
      } else {
        out.push_back(std::move(s));
      }
    }
    rw.sites[fn] = std::move(out);
  }
  return {};
}

Rewrites X86_64::kernel_rewrites() const {
  Rewrites rw;
  // ftrace: every traceable function's `call __fentry__` is NOPed at boot, and while it is
  // traced calls a trampoline (or ftrace_caller): a call out of the function.
  rw.by_symbol["__fentry__"] = {{"ftrace NOP", {0xe8}, kNop5}, {"call to an ftrace trampoline", {0xe8}, {0xe8}, RunForm::Branch::Outside}};
  // apply_returns: `jmp __x86_return_thunk` becomes `ret; int3...` when the CPU needs no
  // return thunk, or a jump to the thunk the mitigation chose (x86_return_thunk).
  rw.by_symbol["__x86_return_thunk"] = {{"ret; int3", {0xe9}, kRetInt3},
                                        {"jmp to the chosen return thunk", {0xe9}, {0xe9}, RunForm::Branch::Outside}};
  static const std::array<const char*, 16> kRegs{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                                 "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
  for (int reg = 0; reg < 16; ++reg)
    if (reg != 4)   // there is no thunk for %rsp
      rw.by_symbol[std::string("__x86_indirect_thunk_") + kRegs[reg]] = retpoline_forms(reg);
  // Static calls (arch/x86/kernel/static_call.c): a site calls or jumps to its target
  // directly, is the NOP for a NULL target, `xor %eax,%eax` (5 bytes) for
  // __static_call_return0, or `ret; int3...` for a NULL tail call.
  std::vector<RunForm> sct{{"direct static call", {0xe8}, {0xe8}, RunForm::Branch::Outside},
                           {"static call NOP", {0xe8}, kNop5},
                           {"static call returning 0", {0xe8}, {0x2e, 0x2e, 0x2e, 0x31, 0xc0}},
                           {"direct static tail call", {0xe9}, {0xe9}, RunForm::Branch::Outside},
                           {"static tail call to NULL", {0xe9}, kRetInt3}};
  for (uint8_t cc = 0; cc < 16; ++cc) {
    uint8_t op = static_cast<uint8_t>(0x80 + cc);
    sct.push_back({"direct conditional static tail call", {0x0f, op}, {0x0f, op}, RunForm::Branch::Outside});
  }
  rw.by_symbol["__SCT__*"] = std::move(sct);
  // static_cpu_has (asm/cpufeature.h): `jmp 6f` into the .altinstr_aux test, which
  // apply_alternatives always replaces: by NOPs when the CPU has the feature, else by a
  // jump to the function's own "no" label (recompute_jump: `jmp rel8` + NOP3 when it
  // reaches).
  rw.by_symbol[".altinstr_aux"] = {
      {"static_cpu_has: has the feature", {0xe9}, kNop5},
      {"static_cpu_has: lacks the feature", {0xe9}, {0xeb}, RunForm::Branch::Inside, 1, {0x0f, 0x1f, 0x00}},
      {"static_cpu_has: lacks the feature", {0xe9}, {0xe9}, RunForm::Branch::Inside}};
  return rw;
}

std::optional<FentrySite> X86_64::fentry_site(std::span<const uint8_t> at) const {
  if (at.size() < kNop5.size()) return std::nullopt;
  if (std::equal(kNop5.begin(), kNop5.end(), at.begin())) return FentrySite{5, std::nullopt};   // nopl 0x0(%rax,%rax,1)
  if (at[0] == 0xe8) {   // call rel32: traced, into ftrace
    int32_t rel;
    std::memcpy(&rel, at.data() + 1, 4);
    return FentrySite{5, 5 + static_cast<int64_t>(rel)};
  }
  return std::nullopt;
}

std::optional<unsigned> X86_64::kernel_module_reloc_width(uint32_t type) const {
  switch (type) {   // apply_relocate_add's cases
    case R_X86_64_NONE: return 0;
    case R_X86_64_64:
    case R_X86_64_PC64: return 8;
    case R_X86_64_32:
    case R_X86_64_32S:
    case R_X86_64_PC32:
    case R_X86_64_PLT32: return 4;
    default: return std::nullopt;
  }
}

}  // namespace ls::arch::x86_64
