// The loader's layout and relocation (the contract and the policies are in link.h).
//
// What is hard:
//   - plan() must bound link() without knowing the base or any run address: whether a
//     call needs a far stub depends on both. So every branch to a run symbol reserves a
//     stub and every GOT-relative access reserves a slot; link() fills only those it
//     uses and leaves the rest as traps (stubs) or zeros (slots). The layout is fixed
//     by the plan, so the writable part's offset never moves.
//   - A TLS relaxation rewrites two instructions and consumes two relocations (the
//     TLS one and the call to __tls_get_addr after it); relocations are therefore
//     walked with an index, not one at a time.
//   - Failures are gathered, not stopped at: a user fixing placement or a resolver
//     wants every overflow and every missing symbol in one message.
//   - Arithmetic is done in 64-bit two's complement, exactly as the CPU will: a field
//     fits when the 64-bit result, read as signed (or unsigned for Abs32), does.
#include "loader/link.h"

#include <elf.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <set>
#include <span>

#include <fmt/ranges.h>

#include "arch/target.h"
#include "base/bytes.h"

namespace ls::load {
namespace {

using elf::RelocKind;

constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kGotSlotSize = 8;
constexpr uint64_t kMaxImage = uint64_t{1} << 31;
constexpr size_t kMaxReported = 40;   // lines; the rest are counted

uint64_t align_up(uint64_t v, uint64_t a) { return a <= 1 ? v : (v + a - 1) / a * a; }
bool fits_s32(int64_t v) { return v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(); }
bool fits_u32(uint64_t v) { return v <= std::numeric_limits<uint32_t>::max(); }

std::string signed_hex(int64_t v) {
  return v < 0 ? fmt::format("-{:#x}", 0 - static_cast<uint64_t>(v)) : fmt::format("{:#x}", v);
}

Area area_of(const elf::Section& s) {
  if (s.exec()) return Area::Code;
  return s.write() ? Area::Writable : Area::ReadOnly;
}

bool supported(RelocKind k) {
  switch (k) {
    case RelocKind::None:
    case RelocKind::Abs64:
    case RelocKind::Abs32:
    case RelocKind::Abs32S:
    case RelocKind::PcRel32:
    case RelocKind::PcRel64:
    case RelocKind::Plt32:
    case RelocKind::GotPcRel:
    case RelocKind::TlsGd:
    case RelocKind::TlsLd:
    case RelocKind::DtpOff32:
    case RelocKind::DtpOff64:
    case RelocKind::GotTpOff:
    case RelocKind::TpOff32:
    case RelocKind::TpOff64:
    case RelocKind::Size32:
    case RelocKind::Size64: return true;
    // GotOff64/GotPc32 only appear in the large code model's PIC, which addresses a GOT
    // base the image does not have.
    default: return false;
  }
}

// Layout order: by area, then as given.
std::vector<uint32_t> layout_order(const elf::Object& update, const std::vector<uint32_t>& secs) {
  std::vector<uint32_t> order;
  for (Area a : {Area::Code, Area::ReadOnly, Area::Writable})
    for (uint32_t i : secs)
      if (area_of(update.section(i)) == a) order.push_back(i);
  return order;
}

bool named_definition(const elf::Symbol& s) {
  return !s.name.empty() && s.type != elf::SymbolType::Section && s.type != elf::SymbolType::File;
}

// A relocation's symbol for messages: section symbols carry their section's name.
std::string symbol_name(const elf::Object& u, uint32_t sym) {
  if (sym == 0) return "(no symbol)";
  const auto& s = u.symbol(sym);
  return s.name.empty() ? fmt::format("(symbol {})", sym) : s.name;
}

}  // namespace

Result<Bindings> check(const update::Contents& contents, const std::vector<uint32_t>& secs) {
  const elf::Object& update = contents.file;
  Bindings b;
  std::vector<std::string> errors;
  std::set<uint32_t> in_image;
  for (uint32_t i : secs) {
    if (i == 0 || i >= update.sections().size()) {
      errors.push_back(fmt::format("{}: section {} does not exist", update.path(), i));
      continue;
    }
    const auto& s = update.section(i);
    if (!in_image.insert(i).second) errors.push_back(fmt::format("{}: listed twice", update.where(s)));
    else if (!s.alloc() || s.type == SHT_RELA || s.type == SHT_SYMTAB)
      errors.push_back(fmt::format("{}: not an allocated section; it cannot be loaded", update.where(s)));
    else if (s.tls())
      errors.push_back(fmt::format("{}: thread-local data cannot be added to a running program", update.where(s)));
    else if (s.size >= kMaxImage)
      errors.push_back(fmt::format("{}: {:#x} bytes; an image must stay under 2 GiB", update.where(s), s.size));
    else if (s.nobits() && !s.relocs.empty())
      errors.push_back(fmt::format("{}: SHT_NOBITS section with relocations", update.where(s)));
  }
  if (!errors.empty()) return Status::error(fmt::format("cannot load {}:\n  {}", update.path(), fmt::join(errors, "\n  ")));

  // Globals the update defines, for binding its own undefined references to them. A
  // run symbol the manifest calls file-local (ELF has no undefined locals, so it is
  // global in the table) names a static of the running program, never these.
  std::map<std::string_view, uint32_t> defined;
  for (const auto& s : update.symbols())
    if (s.in_section() && in_image.count(s.section) && !s.local() && named_definition(s))
      defined.emplace(s.name, s.index);
  auto file_local = [&](uint32_t sym) {
    const update::RunSymbol* e = contents.run_symbol(sym);
    return e && e->local;
  };

  for (uint32_t i : layout_order(update, secs)) {
    const auto& sec = update.section(i);
    for (const auto& r : sec.relocs) {
      std::string at = update.where(sec, static_cast<int64_t>(r.offset));
      if (!supported(r.kind)) {
        errors.push_back(fmt::format("{}: relocation type {} ({}) against '{}' is not supported by the loader", at,
                                     r.type, elf::to_string(r.kind), symbol_name(update, r.symbol)));
        continue;
      }
      if (r.symbol == 0) continue;
      const auto& sym = update.symbol(r.symbol);
      if (sym.in_section() && !in_image.count(sym.section)) {
        errors.push_back(fmt::format("{}: refers to '{}' in {}, which is not part of the image", at,
                                     symbol_name(update, r.symbol), update.section(sym.section).name));
        continue;
      }
      if (sym.section == elf::kCommon) {
        errors.push_back(fmt::format("{}: refers to common symbol '{}', which has no place", at, sym.name));
        continue;
      }
      bool run = !sym.defined();
      if (run && !sym.name.empty() && !file_local(r.symbol)) {
        if (auto d = defined.find(sym.name); d != defined.end()) {
          b.bound[r.symbol] = d->second;
          run = false;
        }
      }
      if ((r.kind == RelocKind::Size32 || r.kind == RelocKind::Size64) && run)
        errors.push_back(fmt::format("{}: the size of run symbol '{}' is not known to the loader", at, sym.name));
    }
  }
  if (!errors.empty())
    return Status::error(fmt::format("cannot load {}:\n  {}", update.path(), fmt::join(errors, "\n  ")));
  return b;
}

Result<Plan> plan(Context& ctx, const update::Contents& contents, const std::vector<uint32_t>& secs) {
  const elf::Object& update = contents.file;
  auto arch = arch::checked_target(update.machine());
  if (!arch) return std::move(arch).status().context(update.path());
  auto checked = check(contents, secs);
  if (!checked) return checked.status();
  Plan p;
  p.page_size = kPageSize;
  p.align = kPageSize;
  p.bound = std::move(checked->bound);
  for (uint32_t i : secs) p.align = std::max(p.align, update.section(i).align);

  std::vector<uint32_t> order = layout_order(update, secs);
  // A stub for every branch to a run symbol, a slot for every GOT-relative access.
  std::set<StubKey> stub_seen;
  std::set<GotKey> got_seen;
  for (uint32_t i : order) {
    const auto& sec = update.section(i);
    std::set<uint64_t> branches;
    if (sec.exec() && !sec.relocs.empty()) branches = (*arch)->branch_fields(sec.bytes);
    for (const auto& r : sec.relocs) {
      if (r.symbol == 0) continue;
      bool run = !update.symbol(r.symbol).defined() && !p.bound.count(r.symbol);
      if (run && (r.kind == RelocKind::Plt32 || r.kind == RelocKind::PcRel32) && branches.count(r.offset) &&
          stub_seen.insert({r.symbol, r.addend}).second)
        p.stubs.push_back({r.symbol, r.addend});
      if ((r.kind == RelocKind::GotPcRel || r.kind == RelocKind::GotTpOff)) {
        GotKey k{r.symbol, r.kind == RelocKind::GotTpOff};
        if (got_seen.insert(k).second) p.got.push_back(k);
      }
    }
  }

  uint64_t cursor = 0;
  auto place = [&](uint32_t i) {
    const auto& s = update.section(i);
    cursor = align_up(cursor, s.align);
    p.sections.push_back({i, cursor, s.size, area_of(s)});
    cursor += s.size;
  };
  size_t k = 0;
  for (; k < order.size() && area_of(update.section(order[k])) == Area::Code; ++k) place(order[k]);
  p.stub_size = (*arch)->far_stub_size;
  p.stubs_offset = align_up(cursor, (*arch)->far_stub_align);
  cursor = p.stubs_offset + p.stubs.size() * p.stub_size;
  p.code_end = cursor;
  for (; k < order.size() && area_of(update.section(order[k])) == Area::ReadOnly; ++k) place(order[k]);
  p.got_offset = align_up(cursor, kGotSlotSize);
  cursor = p.got_offset + p.got.size() * kGotSlotSize;
  p.readonly_end = cursor;
  if (k < order.size()) cursor = align_up(cursor, p.page_size);
  p.writable_offset = cursor;
  for (; k < order.size(); ++k) place(order[k]);
  p.size = cursor;
  if (p.size >= kMaxImage)
    return Status::error(fmt::format("{}: the image would be {:#x} bytes; it must stay under 2 GiB so that its "
                                     "parts reach each other", update.path(), p.size));
  ctx.note(fmt::format("load plan: {} sections, {:#x} bytes ({:#x} code, {} stubs and {} GOT slots reserved)",
                       p.sections.size(), p.size, p.code_end, p.stubs.size(), p.got.size()));
  return p;
}

namespace {

class Linker {
 public:
  Linker(Context& ctx, const arch::Target& arch, const update::Contents& u, const Plan& p, TargetAddr base,
         const SymbolResolver& r)
      : ctx_(ctx), arch_(arch), contents_(u), u_(u.file), plan_(p), base_(base), resolver_(r) {}

  Result<Image> run();

 private:
  struct Answer {
    bool ok = false;
    uint64_t value = 0;
    std::string why;
  };
  struct Missing {
    std::vector<View> views;
    std::string first;
    size_t uses = 0;
    std::string why;
  };
  struct Site {
    const elf::Section& sec;
    const elf::Reloc& r;
    std::span<uint8_t> code;   // the section's bytes in the image
    TargetAddr P;              // the field's address
  };

  const Answer& ask(uint32_t sym, View v);
  std::optional<uint64_t> address(uint32_t sym);
  size_t apply(const std::vector<elf::Reloc>& relocs, size_t i, const Site& s, const std::set<uint64_t>& branches);
  void pc32(const Site& s, const std::set<uint64_t>& branches);
  void via_got(const Site& s, bool tls);
  size_t tls_gd(const std::vector<elf::Reloc>& relocs, size_t i, const Site& s);
  size_t tls_ld(const std::vector<elf::Reloc>& relocs, size_t i, const Site& s);
  std::optional<int64_t> tls_offset(const Site& s);

  void put32(const Site& s, uint64_t v) { put_le32(s.code.subspan(s.r.offset, 4), static_cast<uint32_t>(v)); }
  void put64(const Site& s, uint64_t v) { put_le64(s.code.subspan(s.r.offset, 8), v); }
  bool put_s32(const Site& s, int64_t v, std::string_view what);
  TargetAddr stub(StubKey k, uint64_t target);
  TargetAddr got(GotKey k, uint64_t value);

  std::string place(const Site& s) const;
  void fail_at(const Site& s, std::string msg) { errors_.push_back(fmt::format("{}: {}", place(s), msg)); }
  void missing(const Site& s, std::initializer_list<View> views);
  std::string describe_run_symbol(uint32_t sym);

  Context& ctx_;
  const arch::Target& arch_;
  const update::Contents& contents_;
  const elf::Object& u_;   // contents_.file
  const Plan& plan_;
  TargetAddr base_;
  const SymbolResolver& resolver_;
  Image img_;
  std::map<std::pair<uint32_t, View>, Answer> answers_;
  std::map<StubKey, size_t> stub_index_;
  std::map<GotKey, size_t> got_index_;
  std::vector<bool> stub_filled_, got_filled_;
  std::vector<std::string> errors_;
  std::map<uint32_t, Missing> missing_;
};

const Linker::Answer& Linker::ask(uint32_t sym, View v) {
  auto [it, fresh] = answers_.try_emplace({sym, v});
  if (fresh) {
    Result<TargetAddr> r = resolver_.resolve(sym, v);
    if (r.ok()) it->second = {true, r.value().value(), {}};
    else it->second = {false, 0, r.status().message()};
  }
  return it->second;
}

// S in the Address view: the image's own definitions first, then the resolver.
std::optional<uint64_t> Linker::address(uint32_t sym) {
  if (sym == 0) return 0;
  const auto& s = u_.symbol(sym);
  if (s.in_section()) return img_.section_at.at(s.section).value() + s.value;
  if (s.section == elf::kAbs) return s.value;
  if (auto b = plan_.bound.find(sym); b != plan_.bound.end()) return address(b->second);
  const Answer& a = ask(sym, View::Address);
  return a.ok ? std::optional<uint64_t>(a.value) : std::nullopt;
}

std::string Linker::place(const Site& s) const {
  std::string at = u_.where(s.sec, static_cast<int64_t>(s.r.offset));
  if (s.sec.exec())
    if (auto insn = arch_.instruction_at(s.sec.bytes, s.r.offset)) at += fmt::format(": '{}'", insn->text);
  return fmt::format("{}: {} against '{}'", at, elf::to_string(s.r.kind), symbol_name(u_, s.r.symbol));
}

void Linker::missing(const Site& s, std::initializer_list<View> views) {
  uint32_t sym = s.r.symbol;
  auto [it, fresh] = missing_.try_emplace(sym);
  Missing& m = it->second;
  if (fresh) m.first = u_.where(s.sec, static_cast<int64_t>(s.r.offset));
  ++m.uses;
  for (View v : views) {
    if (std::find(m.views.begin(), m.views.end(), v) == m.views.end()) m.views.push_back(v);
    const Answer& a = ask(sym, v);
    if (m.why.empty() && !a.why.empty()) m.why = a.why;
  }
}

bool Linker::put_s32(const Site& s, int64_t v, std::string_view what) {
  if (!fits_s32(v)) {
    fail_at(s, fmt::format("{} {} does not fit in a signed 32-bit field", what, signed_hex(v)));
    return false;
  }
  put32(s, static_cast<uint64_t>(v));
  return true;
}

TargetAddr Linker::stub(StubKey k, uint64_t target) {
  size_t i = stub_index_.at(k);
  uint64_t off = plan_.stubs_offset + i * plan_.stub_size;
  if (!stub_filled_[i]) {
    arch_.write_far_stub(std::span(img_.bytes).subspan(off, plan_.stub_size), target);
    stub_filled_[i] = true;
    ++img_.stubs_used;
  }
  return base_ + static_cast<int64_t>(off);
}

TargetAddr Linker::got(GotKey k, uint64_t value) {
  size_t i = got_index_.at(k);
  uint64_t off = plan_.got_offset + i * kGotSlotSize;
  if (!got_filled_[i]) {
    put_le64(std::span(img_.bytes).subspan(off, kGotSlotSize), value);
    got_filled_[i] = true;
    ++img_.got_used;
  }
  return base_ + static_cast<int64_t>(off);
}

// PC-relative 32-bit: direct when in reach, else through a far stub if the field is a
// branch to a run symbol (plan() reserved one), else an error.
void Linker::pc32(const Site& s, const std::set<uint64_t>& branches) {
  const auto& r = s.r;
  auto S = address(r.symbol);
  if (!S) return missing(s, {View::Address});
  auto v = static_cast<int64_t>(*S + static_cast<uint64_t>(r.addend) - s.P.value());
  if (fits_s32(v)) return put32(s, static_cast<uint64_t>(v));
  StubKey key{r.symbol, r.addend};
  if (branches.count(r.offset) && stub_index_.count(key)) {
    TargetAddr t = stub(key, *S + static_cast<uint64_t>(r.addend + arch_.branch_bias));
    put_s32(s, t - s.P - arch_.branch_bias, "stub offset");
    return;
  }
  fail_at(s, fmt::format("{:#x} is {} away, beyond ±2 GiB, and only a branch can go through a stub; "
                         "place the image within reach of it", *S, signed_hex(v)));
}

// GOT-relative: the image's own slot holding the value when the value is known, else
// the program's slot when it is in reach (policy in link.h).
void Linker::via_got(const Site& s, bool tls) {
  const auto& r = s.r;
  std::optional<uint64_t> value;
  if (tls) {
    if (auto t = tls_offset(s)) value = static_cast<uint64_t>(*t);
  } else {
    value = address(r.symbol);
  }
  if (value) {
    TargetAddr g = got(GotKey{r.symbol, tls}, *value);
    put_s32(s, g - s.P + r.addend, "GOT slot offset");
    return;
  }
  View slot_view = tls ? View::TlsGotSlot : View::GotSlot;
  const Answer& slot = ask(r.symbol, slot_view);
  if (!slot.ok) return missing(s, {tls ? View::TlsOffset : View::Address, slot_view});
  auto v = static_cast<int64_t>(slot.value + static_cast<uint64_t>(r.addend) - s.P.value());
  if (!fits_s32(v))
    return fail_at(s, fmt::format("only the program's {} at {:#x} is known, and it is {} away, beyond ±2 GiB",
                                  to_string(slot_view), slot.value, signed_hex(v)));
  put32(s, static_cast<uint64_t>(v));
}

std::optional<int64_t> Linker::tls_offset(const Site& s) {
  const Answer& a = ask(s.r.symbol, View::TlsOffset);
  if (!a.ok) return std::nullopt;
  return static_cast<int64_t>(a.value);
}

// General dynamic: relax to local-exec when the TLS offset is known, else use the
// program's GD pair.
size_t Linker::tls_gd(const std::vector<elf::Reloc>& relocs, size_t i, const Site& s) {
  const auto& r = s.r;
  auto call = arch_.gd_call_field(s.code, r.offset);
  bool call_follows = call && i + 1 < relocs.size() && relocs[i + 1].offset == *call;
  // Why local-exec was not possible, for the message when the pair is missing too.
  std::string no_le;
  if (auto tpoff = tls_offset(s)) {
    int64_t v = *tpoff + r.addend + arch_.branch_bias;
    if (!fits_s32(v))   // dynamically allocated TLS (a dlopen()ed module): only the pair reaches it
      no_le = fmt::format("its TLS offset {} is not in static TLS", signed_hex(v));
    else if (!call_follows)
      no_le = "the code is not the general-dynamic sequence 'data16 lea x@tlsgd(%rip),%rdi; data16 data16 "
              "rex.W call __tls_get_addr@PLT' (or its -fno-plt form) that can be rewritten";
    if (no_le.empty()) {
      arch_.rewrite_gd_to_le(s.code, r.offset, static_cast<int32_t>(v));
      return 2;
    }
  }
  const Answer& pair = ask(r.symbol, View::TlsGdPair);
  if (pair.ok) {
    auto v = static_cast<int64_t>(pair.value + static_cast<uint64_t>(r.addend) - s.P.value());
    if (fits_s32(v)) {
      put32(s, static_cast<uint64_t>(v));
      return 1;
    }
    fail_at(s, fmt::format("the program's TLS GD pair at {:#x} is {} away, beyond ±2 GiB{}", pair.value,
                           signed_hex(v), no_le.empty() ? "" : ", and " + no_le));
    return 1;
  }
  if (!no_le.empty()) fail_at(s, fmt::format("the program's TLS GD pair is not known, and {}", no_le));
  else missing(s, {View::TlsOffset, View::TlsGdPair});
  return 1;
}

// Local dynamic: always relaxed; the module base becomes the thread pointer and every
// DtpOff field the variable's TLS offset (see apply()).
size_t Linker::tls_ld(const std::vector<elf::Reloc>& relocs, size_t i, const Site& s) {
  const auto& r = s.r;
  auto call = arch_.ld_call_field(s.code, r.offset);
  if (call && i + 1 < relocs.size() && relocs[i + 1].offset == *call) {
    arch_.rewrite_ld_to_le(s.code, r.offset);
    return 2;
  }
  fail_at(s, "not the local-dynamic sequence 'lea x@tlsld(%rip),%rdi; call __tls_get_addr@PLT' (or its -fno-plt "
             "form) that the loader rewrites to local-exec");
  return 1;
}

size_t Linker::apply(const std::vector<elf::Reloc>& relocs, size_t i, const Site& s,
                     const std::set<uint64_t>& branches) {
  const auto& r = s.r;
  const auto A = static_cast<uint64_t>(r.addend);
  switch (r.kind) {
    case RelocKind::None: break;
    case RelocKind::Abs64:
    case RelocKind::Abs32:
    case RelocKind::Abs32S: {
      auto S = address(r.symbol);
      if (!S) {
        missing(s, {View::Address});
        break;
      }
      uint64_t v = *S + A;
      if (r.kind == RelocKind::Abs64) put64(s, v);
      else if (r.kind == RelocKind::Abs32 && fits_u32(v)) put32(s, v);
      else if (r.kind == RelocKind::Abs32S && fits_s32(static_cast<int64_t>(v))) put32(s, v);
      else if (r.kind == RelocKind::Abs32)
        fail_at(s, fmt::format("value {:#x} does not fit in a zero-extended 32-bit field (code built without "
                               "-fPIC/-fPIE addresses only the low 4 GiB)", v));
      else
        fail_at(s, fmt::format("value {:#x} does not fit in a sign-extended 32-bit field (code built without "
                               "-fPIC/-fPIE addresses only the low 2 GiB)", v));
      break;
    }
    case RelocKind::PcRel64: {
      auto S = address(r.symbol);
      if (!S) missing(s, {View::Address});
      else put64(s, *S + A - s.P.value());
      break;
    }
    case RelocKind::PcRel32:
    case RelocKind::Plt32: pc32(s, branches); break;
    case RelocKind::GotPcRel: via_got(s, false); break;
    case RelocKind::GotTpOff: via_got(s, true); break;
    case RelocKind::TpOff32:
    case RelocKind::TpOff64:
    case RelocKind::DtpOff32:   // local-dynamic code is relaxed to local-exec: see tls_ld()
    case RelocKind::DtpOff64: {
      auto t = tls_offset(s);
      if (!t) missing(s, {View::TlsOffset});
      else if (r.kind == RelocKind::TpOff64 || r.kind == RelocKind::DtpOff64) put64(s, static_cast<uint64_t>(*t) + A);
      else if (auto v = static_cast<int64_t>(static_cast<uint64_t>(*t) + A); fits_s32(v)) put32(s, static_cast<uint64_t>(v));
      else fail_at(s, fmt::format("TLS offset {} does not fit in a signed 32-bit field: '{}' is not in static TLS "
                                  "(thread-locals of a dlopen()ed module are not near the thread pointer){}",
                                  signed_hex(v), symbol_name(u_, r.symbol),
                                  r.kind == RelocKind::DtpOff32 ? "; local-dynamic code can only be relaxed to local-exec" : ""));
      break;
    }
    case RelocKind::TlsGd: return tls_gd(relocs, i, s);
    case RelocKind::TlsLd: return tls_ld(relocs, i, s);
    case RelocKind::Size32:
    case RelocKind::Size64: {
      // plan() refused run symbols; a bound one is sized by its definition.
      uint32_t sym = plan_.bound.count(r.symbol) ? plan_.bound.at(r.symbol) : r.symbol;
      uint64_t v = u_.symbol(sym).size + A;
      if (r.kind == RelocKind::Size64) put64(s, v);
      else if (fits_u32(v)) put32(s, v);
      else fail_at(s, fmt::format("size {:#x} does not fit in 32 bits", v));
      break;
    }
    default: fail_at(s, "relocation kind not supported by the loader"); break;
  }
  return 1;
}

std::string Linker::describe_run_symbol(uint32_t sym) {
  std::string out = fmt::format("'{}'", symbol_name(u_, sym));
  const update::RunSymbol* e = contents_.run_symbol(sym);
  if (!e) return out;
  if (!e->local) return out + " (global)";
  out += fmt::format(" (file-local {} in {}", e->section ? "section" : "symbol", e->source.empty() ? "?" : e->source);
  if (!e->object.empty()) out += fmt::format(", object {}", e->object);
  return out + ")";
}

Result<Image> Linker::run() {
  if (plan_.align == 0 || base_.value() % plan_.align != 0)
    return Status::error(fmt::format("{}: load address {} is not aligned to {:#x}", u_.path(), base_, plan_.align));
  if (base_.value() + plan_.size < base_.value())
    return Status::error(fmt::format("{}: an image of {:#x} bytes does not fit at {}", u_.path(), plan_.size, base_));
  img_.base = base_;
  img_.bytes.assign(plan_.size, 0);
  // Padding between functions and unused stubs trap rather than slide into code.
  std::fill(img_.bytes.begin(), img_.bytes.begin() + static_cast<ptrdiff_t>(plan_.code_end), arch_.trap);
  for (const auto& pl : plan_.sections) {
    const auto& sec = u_.section(pl.section);
    if (pl.offset + pl.size > plan_.size || (!sec.nobits() && sec.bytes.size() != pl.size))
      return Status::error(fmt::format("{}: the plan does not match this update", u_.where(sec)));
    if (sec.nobits()) std::fill_n(img_.bytes.begin() + static_cast<ptrdiff_t>(pl.offset), pl.size, 0);
    else std::copy(sec.bytes.begin(), sec.bytes.end(), img_.bytes.begin() + static_cast<ptrdiff_t>(pl.offset));
    img_.section_at[pl.section] = base_ + static_cast<int64_t>(pl.offset);
  }
  for (const auto& s : u_.symbols())
    if (s.in_section() && named_definition(s) && img_.section_at.count(s.section))
      img_.symbol_at[s.index] = img_.section_at[s.section] + static_cast<int64_t>(s.value);
  for (size_t i = 0; i < plan_.stubs.size(); ++i) stub_index_[plan_.stubs[i]] = i;
  for (size_t i = 0; i < plan_.got.size(); ++i) got_index_[plan_.got[i]] = i;
  stub_filled_.assign(plan_.stubs.size(), false);
  got_filled_.assign(plan_.got.size(), false);

  for (const auto& pl : plan_.sections) {
    const auto& sec = u_.section(pl.section);
    if (sec.relocs.empty()) continue;
    std::span<uint8_t> code = std::span(img_.bytes).subspan(pl.offset, pl.size);
    std::set<uint64_t> branches;
    if (sec.exec()) branches = arch_.branch_fields(sec.bytes);
    for (size_t i = 0; i < sec.relocs.size();) {
      const auto& r = sec.relocs[i];
      Site site{sec, r, code, img_.section_at[pl.section] + static_cast<int64_t>(r.offset)};
      i += apply(sec.relocs, i, site, branches);
    }
  }

  std::vector<std::string> lines = errors_;
  for (auto& [sym, m] : missing_) {
    std::vector<std::string_view> views;
    for (View v : m.views) views.push_back(to_string(v));
    lines.push_back(fmt::format("undefined run symbol {}: the resolver knows no {} for it; needed at {}{}{}",
                                describe_run_symbol(sym), fmt::join(views, " or "), m.first,
                                m.uses > 1 ? fmt::format(" and {} more places", m.uses - 1) : "",
                                m.why.empty() ? "" : ": " + m.why));
  }
  if (!lines.empty()) {
    size_t more = lines.size() > kMaxReported ? lines.size() - kMaxReported : 0;
    lines.resize(std::min(lines.size(), kMaxReported));
    if (more) lines.push_back(fmt::format("... and {} more", more));
    return Status::error(fmt::format("cannot link {} at {}:\n  {}", u_.path(), base_, fmt::join(lines, "\n  ")));
  }

  img_.code = {base_, base_ + static_cast<int64_t>(plan_.code_end)};
  img_.readonly = {img_.code.end, base_ + static_cast<int64_t>(plan_.readonly_end)};
  img_.writable = {base_ + static_cast<int64_t>(plan_.writable_offset), base_ + static_cast<int64_t>(plan_.size)};
  ctx_.note(fmt::format("linked {} at {}: {:#x} bytes, {} far stubs, {} GOT slots", u_.path(), base_,
                        img_.bytes.size(), img_.stubs_used, img_.got_used));
  return std::move(img_);
}

}  // namespace

Result<Image> link(Context& ctx, const update::Contents& update, const Plan& plan, TargetAddr base,
                   const SymbolResolver& resolver) {
  auto arch = arch::checked_target(update.file.machine());
  if (!arch) return std::move(arch).status().context(update.file.path());
  Linker l(ctx, **arch, update, plan, base, resolver);
  return l.run();
}

}  // namespace ls::load
