// Run-pre matching (see matcher.h for the contract).
//
// What is hard is deciding *where* a function is, not comparing bytes. Symbol tables
// offer zero, one or several candidates (a static name repeated across files, a
// stripped executable); the update's own references between functions reveal more (a
// matched caller's `call helper` tells where helper is); and content search finds the
// rest. So matching is a fixed point: try what can be tried, commit every request with
// exactly one matching address, feed what committed functions reveal back in as
// candidates and as constraints (a candidate that contradicts an established resolution
// does not match), and fall back to content search one request at a time, because each
// match may make the next search unnecessary. Every (candidate, request) is compared
// once; re-checking against new constraints only walks its recorded resolutions.
//
// The comparison itself walks the pre code's relocations in order: bytes between sites
// must be equal, each site is read by the architecture (src/arch/x86_64_relax.h), which
// knows what linkers rewrite around a field and what the field then holds.
//
// A target may rewrite its own code after loading it (the kernel turns `call __fentry__`
// into a NOP and `jmp __x86_return_thunk` into `ret`). Those rewrites come in as data
// (Rewrites): per symbol a relocation names, the forms its instruction may take. They are
// tried before the linker's reading, and only at sites naming that symbol, so a NOP is
// still a difference anywhere else; a rewritten site reveals nothing.
//
// Literals are compared by content, not by address: the linker merges string and
// constant pools across objects (and may make "world" the tail of "hello world"), so a
// literal has no address to agree on. The update carries the pre pools; once a
// candidate's code matches, the literal each site points at in run is read and compared
// with the carried one. Only then is it a match: a build whose only difference is a
// string is another build.
#include "matcher/matcher.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "arch/x86_64_relax.h"
#include "update/update.h"

namespace ls::match {
namespace {

using arch::Reveal;
using Json = nlohmann::json;

struct Key {
  uint32_t symbol;
  Reveal view;
  auto operator<=>(const Key&) const = default;
};

struct Reading {
  Key key;
  uint64_t value;
  uint64_t site;          // pre offset of the field
  std::string evidence;
};

struct Trial {
  enum class Outcome { Matched, Differs, Unreadable };
  Outcome outcome = Outcome::Differs;
  TargetAddr at;
  std::string origin;     // "symbol table", "revealed by …", "content search"
  uint64_t prefix = 0;    // pre bytes equal before the first difference
  std::string report;     // for Differs / Unreadable
  std::vector<Reading> reveals;
};

// What the manifest says about the update's symbols; empty when there is none.
struct RunSymbolInfo {
  std::string name;
  bool local = false;
  bool section = false;
  int64_t object = -1;
};

// GCC's literal pools (`.rodata.str1.1`, `.rodata.foo.str1.8`, `.rodata.cst16`): the
// linker merges them across objects, so offsets into one say nothing about another.
bool literal_pool_name(std::string_view name) {
  if (!name.starts_with(".rodata.")) return false;
  std::vector<std::string_view> parts;
  for (size_t at = 1, dot; at <= name.size(); at = dot + 1) {
    dot = std::min(name.find('.', at), name.size());
    parts.push_back(name.substr(at, dot - at));
  }
  auto number = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  size_t n = parts.size();
  return (n >= 3 && parts[n - 2].starts_with("str") && number(parts[n - 2].substr(3)) && number(parts[n - 1])) ||
         (n >= 2 && parts[n - 1].starts_with("cst") && number(parts[n - 1].substr(3)));
}

// A site of pre code that refers to a literal in a pool the update carries.
struct LiteralSite {
  const elf::Section* pool = nullptr;
  uint64_t offset = 0;     // of the literal in the pool
  int64_t delta = 0;       // literal address = what the site reveals + delta
};

std::string hex_bytes(std::span<const uint8_t> b, uint64_t from, uint64_t n);
std::string show_literal(std::span<const uint8_t> b, bool string, uint64_t entsize);

struct Prepared {
  const Request* req = nullptr;
  std::span<const uint8_t> pre;
  std::vector<elf::Reloc> relocs;          // None dropped, sorted by offset
  uint64_t align = 1;
  bool has_tls_ld = false;
  std::vector<uint32_t> aliases;           // run symbols naming this function
  bool local = false;                      // aliases are file-local (never reached through a PLT)
  std::map<uint64_t, arch::FieldSymbol> fields;
  std::map<uint64_t, LiteralSite> literals;   // by field offset
  uint64_t anchor_off = 0, anchor_len = 0; // longest run of bytes no site may rewrite
};

class Matcher {
 public:
  Matcher(Context& ctx, const CodeSource& run, const elf::Object& update, const std::vector<Request>& requests,
          const Rewrites& rewrites)
      : ctx_(ctx), run_(run), update_(update), requests_(requests), rewrites_(rewrites) {}

  Result<Match> run();

 private:
  void read_manifest();
  Status prepare(size_t i);
  Trial evaluate(size_t i, TargetAddr at, std::span<const uint8_t> bytes, std::string origin) const;
  void compare(size_t i, Trial& t, std::span<const uint8_t> bytes) const;
  const RunForm* rewritten(size_t i, size_t k, std::span<const uint8_t> bytes, uint64_t pos, bool& inward) const;
  Status check_rewrites() const;
  std::string differs_report(size_t i, TargetAddr at, std::span<const uint8_t> bytes, uint64_t off) const;
  std::optional<std::string> literal_differs(size_t i, TargetAddr at, uint64_t site, const LiteralSite& l,
                                             TargetAddr run_at) const;
  const elf::Section* carried_pool(uint32_t sym) const;
  std::optional<std::string> conflict(size_t i, const Trial& t) const;
  const Trial& trial(size_t i, TargetAddr at, const std::string& origin);
  bool try_commit(size_t i);
  bool scan(size_t i);
  std::string failure(size_t i) const;
  std::string symbol_name(uint32_t sym) const;
  bool literal(uint32_t sym) const;
  Result<std::span<const uint8_t>> range_bytes(const TargetRange& r);

  Context& ctx_;
  const CodeSource& run_;
  const elf::Object& update_;
  const std::vector<Request>& requests_;
  const Rewrites& rewrites_;

  std::map<uint32_t, RunSymbolInfo> run_symbols_;            // by update symbol index
  std::map<uint32_t, RunSymbolInfo> functions_by_section_;   // pre section -> the function
  std::vector<Prepared> preps_;
  std::vector<std::map<TargetAddr, std::string>> candidates_;   // per request: address -> origin
  std::vector<std::map<TargetAddr, Trial>> trials_;
  std::vector<std::optional<TargetAddr>> at_;
  std::vector<std::string> scan_notes_;
  std::map<Key, Resolution> established_;
  std::map<std::pair<uint64_t, uint64_t>, std::vector<uint8_t>> ranges_;
};

std::string Matcher::symbol_name(uint32_t sym) const {
  if (sym == 0) return "(no symbol)";
  return sym < update_.symbols().size() ? update_.symbol(sym).name : fmt::format("symbol #{}", sym);
}

// The pre literal pool (`.livesplice.pre.rodata.foo.str1.1`) a symbol of the update
// is defined in, or nullptr.
const elf::Section* Matcher::carried_pool(uint32_t sym) const {
  if (sym == 0 || sym >= update_.symbols().size() || !update_.symbol(sym).in_section()) return nullptr;
  const elf::Section& s = update_.section(update_.symbol(sym).section);
  bool pool = s.name.starts_with(".livesplice.pre.") && !s.exec() && !s.nobits() && s.entsize > 0 &&
              (s.merge_strings() || s.merge_constants());
  return pool ? &s : nullptr;
}

bool Matcher::literal(uint32_t sym) const {
  if (carried_pool(sym)) return true;
  auto it = run_symbols_.find(sym);
  if (it != run_symbols_.end()) return it->second.section && literal_pool_name(it->second.name);
  return sym < update_.symbols().size() && literal_pool_name(update_.symbol(sym).name);
}

// The manifest ties pre sections to functions and run symbols to the objects they are
// local to; without it matching still works, only without feeding call sites back.
void Matcher::read_manifest() {
  const elf::Section* s = update_.find_section(update::kManifestSection);
  if (!s) return;
  Json m = Json::parse(s->bytes.begin(), s->bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object()) {
    ctx_.warn(fmt::format("{}: unreadable manifest; matching without it", update_.path()));
    return;
  }
  auto str = [](const Json& j, const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : ""; };
  auto num = [](const Json& j, const char* k) { return j.contains(k) && j[k].is_number_integer() ? j[k].get<int64_t>() : -1; };
  auto flag = [](const Json& j, const char* k) { return j.contains(k) && j[k].is_boolean() && j[k].get<bool>(); };
  if (m.contains("run_symbols") && m["run_symbols"].is_array())
    for (const Json& r : m["run_symbols"]) {
      if (!r.is_object() || num(r, "index") < 0) continue;
      run_symbols_[static_cast<uint32_t>(num(r, "index"))] =
          RunSymbolInfo{str(r, "name"), flag(r, "local"), str(r, "kind") == "section", num(r, "object")};
    }
  if (m.contains("functions") && m["functions"].is_array())
    for (const Json& f : m["functions"]) {
      if (!f.is_object() || num(f, "pre_section") <= 0) continue;
      functions_by_section_[static_cast<uint32_t>(num(f, "pre_section"))] =
          RunSymbolInfo{str(f, "name"), flag(f, "local"), false, num(f, "object")};
    }
}

Status Matcher::prepare(size_t i) {
  const Request& req = requests_[i];
  Prepared& p = preps_[i];
  p.req = &req;
  if (req.pre_section == 0 || req.pre_section >= update_.sections().size())
    return error("{}: pre section {} is not a section of {}", req.label, req.pre_section, update_.path());
  const elf::Section& sec = update_.section(req.pre_section);
  if (!sec.name.starts_with(".livesplice.pre.") || sec.nobits() || sec.bytes.empty())
    return error("{}: section {} ({}) of {} is not pre code", req.label, req.pre_section, sec.name, update_.path());
  p.pre = sec.bytes;
  p.align = std::max<uint64_t>(sec.align, 1);
  for (const auto& r : sec.relocs)
    if (r.kind != elf::RelocKind::None) p.relocs.push_back(r);
  std::vector<arch::OperandField> operands;   // decoded only if some site names a literal
  for (size_t k = 0; k < p.relocs.size(); ++k) {
    const elf::Reloc& r = p.relocs[k];
    if (std::string why = arch::x86_64_site_unsupported(p.pre, p.relocs, k); !why.empty())
      return error("{}+{:#x}: cannot match {} against '{}': {}", req.label, r.offset, arch::x86_64_reloc_name(r.type),
                   symbol_name(r.symbol), why);
    if (r.kind == elf::RelocKind::TlsLd) p.has_tls_ld = true;
    p.fields[r.offset] = arch::FieldSymbol{r.kind, symbol_name(r.symbol), r.addend};
    if (const elf::Section* pool = carried_pool(r.symbol)) {
      // A PC-relative addend has the distance to the end of the instruction folded in.
      int64_t bias = 0;
      if (elf::is_pc_relative(r.kind)) {
        if (operands.empty()) operands = arch::x86_64_operand_fields(p.pre);
        auto f = std::lower_bound(operands.begin(), operands.end(), r.offset,
                                  [](const arch::OperandField& o, uint64_t off) { return o.offset < off; });
        bias = f != operands.end() && f->offset == r.offset ? f->bias : static_cast<int64_t>(r.width);
      }
      int64_t delta = r.addend + bias;
      int64_t offset = static_cast<int64_t>(update_.symbol(r.symbol).value) + delta;
      // A pointer computed past the pool (`"abc" - 1` in a loop) names no literal to compare.
      if (offset >= 0 && static_cast<uint64_t>(offset) < pool->bytes.size()) {
        p.literals[r.offset] = LiteralSite{pool, static_cast<uint64_t>(offset), delta};
        // Reports show the literal itself in the operand: `lea "hello\n"(%rip),%rdi`.
        auto at = static_cast<uint64_t>(offset);
        std::string shown = pool->merge_strings()
                                ? show_literal(pool->bytes.subspan(at), true, pool->entsize)
                                : "const:" + hex_bytes(pool->bytes, at - at % pool->entsize, pool->entsize);
        if (!pool->merge_strings()) shown.erase(std::remove(shown.begin(), shown.end(), ' '), shown.end());
        p.fields[r.offset] = arch::FieldSymbol{r.kind, shown, -bias};
      }
    }
  }

  // Content-search anchor: the longest stretch of bytes that must be equal in run.
  std::vector<bool> variable(p.pre.size(), false);
  for (const auto& r : p.relocs) {
    arch::Extent e = arch::x86_64_site_extent(p.pre, r);
    std::fill(variable.begin() + static_cast<ptrdiff_t>(e.begin), variable.begin() + static_cast<ptrdiff_t>(e.end), true);
    if (const auto* forms = rewrites_.forms_for(symbol_name(r.symbol)))
      for (const RunForm& f : *forms)
        if (r.offset >= f.assembled.size())
          std::fill(variable.begin() + static_cast<ptrdiff_t>(r.offset - f.assembled.size()),
                    variable.begin() + static_cast<ptrdiff_t>(std::min<uint64_t>(r.offset + 4, p.pre.size())), true);
  }
  constexpr uint64_t kAnchorMax = 32;   // long enough to be rare, short enough to be cheap
  for (uint64_t k = 0, run = 0; k <= p.pre.size(); ++k) {
    if (k < p.pre.size() && !variable[k]) {
      ++run;
      continue;
    }
    if (run > p.anchor_len) p.anchor_len = run, p.anchor_off = k - run;
    run = 0;
  }
  p.anchor_len = std::min(p.anchor_len, kAnchorMax);

  // The run symbols other functions' code uses to name this one.
  if (auto f = functions_by_section_.find(req.pre_section); f != functions_by_section_.end()) {
    p.local = f->second.local;
    for (const auto& [index, rs] : run_symbols_) {
      if (rs.section || rs.local != f->second.local || (rs.local && rs.object != f->second.object)) continue;
      if (rs.name == f->second.name || rs.name == f->second.name + ".localalias") p.aliases.push_back(index);
    }
  }
  return {};
}

std::string hex_bytes(std::span<const uint8_t> b, uint64_t from, uint64_t n) {
  std::string s;
  for (uint64_t k = from; k < std::min<uint64_t>(b.size(), from + n); ++k) s += fmt::format("{}{:02x}", s.empty() ? "" : " ", b[k]);
  return s;
}

std::string Matcher::differs_report(size_t i, TargetAddr at, std::span<const uint8_t> bytes, uint64_t off) const {
  const Prepared& p = preps_[i];
  auto want = arch::x86_64_disassemble(p.pre, off, at.value(), p.fields);
  auto got = arch::x86_64_disassemble(bytes, off, at.value());
  std::string expected = want ? want->text : "bytes " + hex_bytes(p.pre, off, 8);
  std::string found = got ? got->text : "bytes " + hex_bytes(bytes, off, 8);
  if (expected == found && want && got)   // same text, different encoding (e.g. a prefix)
    expected += " [" + hex_bytes(p.pre, want->start, want->length) + "]",
        found += " [" + hex_bytes(bytes, got->start, got->length) + "]";
  return fmt::format("{} at {}+{:#x}: run code differs from pre: expected '{}', found '{}'", p.req->label, at, off,
                     expected, found);
}

// A literal as a report shows it: C escapes for strings, hex bytes for constants.
std::string show_literal(std::span<const uint8_t> b, bool string, uint64_t entsize) {
  constexpr size_t kMax = 120;
  if (!string || entsize != 1) return hex_bytes(b, 0, std::min<uint64_t>(b.size(), 32));
  std::string s = "\"";
  for (size_t k = 0; k < b.size() && b[k] != 0; ++k) {
    if (s.size() > kMax) return s + "\"...";
    char c = static_cast<char>(b[k]);
    switch (c) {
      case '\n': s += "\\n"; break;
      case '\t': s += "\\t"; break;
      case '"': s += "\\\""; break;
      case '\\': s += "\\\\"; break;
      default: s += b[k] >= 0x20 && b[k] < 0x7f ? std::string(1, c) : fmt::format("\\x{:02x}", b[k]);
    }
  }
  return s + "\"";
}

// Whether the literal pre code names at `site` differs from the one at `run_at` in run:
// for a string, the characters up to and including its terminator; for a constant, the
// whole entry holding the referenced byte.
std::optional<std::string> Matcher::literal_differs(size_t i, TargetAddr at, uint64_t site, const LiteralSite& l,
                                                    TargetAddr run_at) const {
  const elf::Section& pool = *l.pool;
  const uint64_t e = pool.entsize;
  const bool string = pool.merge_strings();
  uint64_t from = l.offset, to;
  if (string) {
    to = from;
    auto zero = [&](uint64_t k) {
      auto c = pool.bytes.subspan(k, e);
      return std::all_of(c.begin(), c.end(), [](uint8_t b) { return b == 0; });
    };
    while (to + e <= pool.bytes.size() && !zero(to)) to += e;
    to = std::min<uint64_t>(to + e, pool.bytes.size());
  } else {
    from -= from % e;
    to = std::min<uint64_t>(from + e, pool.bytes.size());
  }
  std::span<const uint8_t> want = pool.bytes.subspan(from, to - from);
  TargetAddr start = run_at - static_cast<int64_t>(l.offset - from);
  std::vector<uint8_t> got(want.size());
  std::string what = string ? "string literal" : fmt::format("constant ({} bytes)", e);
  std::string where = fmt::format("{} at {}+{:#x}", preps_[i].req->label, at, site);
  if (Status s = run_.read(start, got); !s.ok())
    return fmt::format("{}: the {} it refers to cannot be read at {}: {}", where, what, start, s.message());
  if (std::equal(want.begin(), want.end(), got.begin())) return std::nullopt;
  if (string) {   // show the run string whole, as far as it can be read
    std::vector<uint8_t> more(want.size() + 64);
    if (run_.read(start, more).ok()) got = std::move(more);
  }
  return fmt::format("{}: {} differs from pre: expected {}, found {} (at {})", where, what,
                     show_literal(want, string, e), show_literal(got, string, e), start);
}

// The target's own form of site relocs[k] in run, when `rewrites_` lists one for its
// symbol and the instruction (which must end with the site's rel32 field, starting at or
// after `pos`) takes it. `inward`: a branch form's opcode is there but its target is inside
// the function, which no rewrite (and no call to another symbol) produces.
const RunForm* Matcher::rewritten(size_t i, size_t k, std::span<const uint8_t> bytes, uint64_t pos,
                                  bool& inward) const {
  inward = false;
  const Prepared& p = preps_[i];
  const elf::Reloc& r = p.relocs[k];
  if (!elf::is_pc_relative(r.kind) || r.width != 4 || r.addend != -4 || r.offset + 4 > p.pre.size()) return nullptr;
  const std::vector<RunForm>* forms = rewrites_.forms_for(symbol_name(r.symbol));
  if (!forms) return nullptr;
  for (const RunForm& f : *forms) {
    const uint64_t n = f.assembled.size();
    if (r.offset < n || r.offset - n < pos) continue;
    const uint64_t start = r.offset - n;
    auto here = [&](std::span<const uint8_t> b, const std::vector<uint8_t>& want) {
      return std::equal(want.begin(), want.end(), b.begin() + static_cast<ptrdiff_t>(start));
    };
    if (!here(p.pre, f.assembled) || !here(bytes, f.run)) continue;
    if (f.branch == RunForm::Branch::None) return &f;
    const uint64_t disp = start + f.run.size(), next = disp + f.displacement;
    if (!std::equal(f.after.begin(), f.after.end(), bytes.begin() + static_cast<ptrdiff_t>(next))) continue;
    int64_t rel = 0;
    if (f.displacement == 1) {
      rel = static_cast<int8_t>(bytes[disp]);
    } else {
      int32_t r32 = 0;
      std::memcpy(&r32, bytes.data() + disp, sizeof r32);
      rel = r32;
    }
    const int64_t target = static_cast<int64_t>(next) + rel;   // relative to the function
    const bool outside = target < 0 || static_cast<uint64_t>(target) >= p.pre.size();
    if (outside == (f.branch == RunForm::Branch::Outside)) return &f;
    if (f.branch == RunForm::Branch::Outside) inward = true;
  }
  return nullptr;
}

void Matcher::compare(size_t i, Trial& t, std::span<const uint8_t> bytes) const {
  const Prepared& p = preps_[i];
  const uint64_t base = t.at.value();
  auto differ_at = [&](uint64_t off) {
    t.outcome = Trial::Outcome::Differs;
    t.prefix = off;
    t.report = differs_report(i, t.at, bytes, off);
  };
  auto equal_until = [&](uint64_t lo, uint64_t hi) {
    for (uint64_t k = lo; k < hi; ++k)
      if (p.pre[k] != bytes[k]) return k;
    return hi;
  };
  // ld rewrites local-dynamic TLS for a whole executable; then DTPOFF fields hold tp offsets.
  bool dtpoff_is_tpoff = false;
  for (size_t k = 0; p.has_tls_ld && k < p.relocs.size(); ++k)
    if (p.relocs[k].kind == elf::RelocKind::TlsLd &&
        arch::x86_64_read_site(p.pre, bytes, p.relocs, k, base, false).tls_ld_relaxed)
      dtpoff_is_tpoff = true;

  std::map<Key, size_t> seen;   // -> index in t.reveals
  std::vector<std::pair<uint64_t, TargetAddr>> literal_sites;   // field offset, literal's run address
  uint64_t pos = 0;
  for (size_t k = 0; k < p.relocs.size();) {
    const elf::Reloc& r = p.relocs[k];
    bool inward = false;
    if (const RunForm* f = rewritten(i, k, bytes, pos, inward)) {
      uint64_t start = r.offset - f->assembled.size();
      if (uint64_t d = equal_until(pos, start); d < start) return differ_at(d);
      pos = r.offset + 4;
      ++k;
      continue;
    }
    if (inward) return differ_at(r.offset);
    arch::SiteRead s = arch::x86_64_read_site(p.pre, bytes, p.relocs, k, base, dtpoff_is_tpoff);
    uint64_t begin = std::max(pos, s.outcome == arch::SiteRead::Outcome::Read ? s.begin
                                                                              : arch::x86_64_site_extent(p.pre, r).begin);
    if (uint64_t d = equal_until(pos, begin); d < begin) return differ_at(d);
    if (s.outcome == arch::SiteRead::Outcome::Differs) return differ_at(std::max(s.offset, pos));
    pos = std::max(pos, s.end);
    k += s.relocs;
    if (s.reveals && s.view == Reveal::Address && p.literals.count(r.offset))
      literal_sites.emplace_back(r.offset, TargetAddr(s.value + static_cast<uint64_t>(p.literals.at(r.offset).delta)));
    if (!s.reveals || literal(r.symbol)) continue;
    if (r.symbol == 0) {   // an absolute value: nothing to learn, but it must be what pre says
      if (s.value != 0) return differ_at(r.offset);
      continue;
    }
    std::string evidence = fmt::format("{}+{:#x}", p.req->label, r.offset);
    if (!s.form.empty()) evidence += fmt::format(" ({})", s.form);
    t.reveals.push_back(Reading{{r.symbol, s.view}, s.value, r.offset, std::move(evidence)});
    const Reading& now = t.reveals.back();
    auto [it, fresh] = seen.emplace(now.key, t.reveals.size() - 1);
    if (!fresh && t.reveals[it->second].value != now.value) {
      const Reading& then = t.reveals[it->second];
      t.outcome = Trial::Outcome::Differs;
      t.prefix = r.offset;
      t.report = fmt::format("{} at {}+{:#x}: '{}' ({}) is {:#x} here but {:#x} at +{:#x}", p.req->label, t.at,
                             r.offset, symbol_name(r.symbol), arch::to_string(s.view), now.value, then.value,
                             then.site);
      return;
    }
  }
  if (uint64_t d = equal_until(pos, p.pre.size()); d < p.pre.size()) return differ_at(d);
  // The code is the same; the literals it uses must be too (read only now, so that
  // candidates whose code differs cost no reads).
  for (const auto& [site, run_at] : literal_sites)
    if (auto why = literal_differs(i, t.at, site, p.literals.at(site), run_at)) {
      t.outcome = Trial::Outcome::Differs;
      t.prefix = p.pre.size();   // closer than any candidate whose code differs
      t.report = std::move(*why);
      return;
    }
  // A file-local function is reached directly, never through a PLT: its own run symbols
  // must name this very address, which lets call sites elsewhere confirm or refute it.
  if (p.local)
    for (uint32_t a : p.aliases)
      t.reveals.push_back(Reading{{a, Reveal::Address}, base, 0, fmt::format("{} matched here", p.req->label)});
  t.outcome = Trial::Outcome::Matched;
  t.prefix = p.pre.size();
}

Trial Matcher::evaluate(size_t i, TargetAddr at, std::span<const uint8_t> bytes, std::string origin) const {
  Trial t;
  t.at = at;
  t.origin = std::move(origin);
  compare(i, t, bytes);
  return t;
}

const Trial& Matcher::trial(size_t i, TargetAddr at, const std::string& origin) {
  if (auto it = trials_[i].find(at); it != trials_[i].end()) return it->second;
  std::vector<uint8_t> bytes(preps_[i].pre.size());
  Trial t;
  if (Status s = run_.read(at, bytes); !s.ok()) {
    t.at = at;
    t.origin = origin;
    t.outcome = Trial::Outcome::Unreadable;
    t.report = fmt::format("{} at {}: cannot read its {} bytes: {}", requests_[i].label, at, bytes.size(), s.message());
  } else {
    t = evaluate(i, at, bytes, origin);
  }
  return trials_[i].emplace(at, std::move(t)).first->second;
}

// Why trial `t` contradicts what matched functions established, if it does.
std::optional<std::string> Matcher::conflict(size_t i, const Trial& t) const {
  for (const Reading& r : t.reveals) {
    auto it = established_.find(r.key);
    if (it == established_.end() || it->second.value.value() == r.value) continue;
    return fmt::format("{} at {} matches byte for byte, but there '{}' ({}) is {:#x} ({}) while {} established {}",
                       requests_[i].label, t.at, symbol_name(r.key.symbol), arch::to_string(r.key.view), r.value,
                       r.evidence, it->second.evidence, it->second.value);
  }
  return std::nullopt;
}

bool Matcher::try_commit(size_t i) {
  std::vector<const Trial*> matching;
  for (const auto& [addr, origin] : candidates_[i]) {
    const Trial& t = trial(i, addr, origin);
    if (t.outcome == Trial::Outcome::Matched && !conflict(i, t)) matching.push_back(&t);
  }
  if (matching.size() != 1) return false;   // none yet, or ambiguous until something constrains it
  const Trial& t = *matching.front();
  at_[i] = t.at;
  ctx_.note(fmt::format("matched {} at {} ({})", requests_[i].label, t.at, t.origin));
  for (const Reading& r : t.reveals) {
    established_.emplace(r.key, Resolution{TargetAddr(r.value), r.evidence});
    if (r.key.view != Reveal::Address) continue;
    for (size_t j = 0; j < preps_.size(); ++j)
      if (!at_[j] && std::find(preps_[j].aliases.begin(), preps_[j].aliases.end(), r.key.symbol) != preps_[j].aliases.end())
        candidates_[j].emplace(TargetAddr(r.value), "revealed by " + r.evidence);
  }
  return true;
}

Result<std::span<const uint8_t>> Matcher::range_bytes(const TargetRange& r) {
  auto key = std::make_pair(r.start.value(), r.end.value());
  if (auto it = ranges_.find(key); it != ranges_.end()) return std::span<const uint8_t>(it->second);
  if (r.end <= r.start) return std::span<const uint8_t>();
  std::vector<uint8_t> bytes(r.size());
  LS_TRY(run_.read(r.start, bytes));
  return std::span<const uint8_t>(ranges_.emplace(key, std::move(bytes)).first->second);
}

// Content search: every place in `search` where the anchor occurs is compared in full;
// full matches become candidates, and the closest miss is kept for the report.
bool Matcher::scan(size_t i) {
  const Prepared& p = preps_[i];
  const Request& req = *p.req;
  uint64_t total = 0;
  std::optional<Trial> closest;
  if (p.anchor_len == 0) {
    scan_notes_[i] = "its code has no byte outside relocation sites to search for";
    return false;
  }
  std::span<const uint8_t> anchor = p.pre.subspan(p.anchor_off, p.anchor_len);
  std::boyer_moore_horspool_searcher searcher(anchor.begin(), anchor.end());
  size_t hits = 0;
  for (const TargetRange& r : req.search) {
    auto bytes = range_bytes(r);
    if (!bytes) {
      scan_notes_[i] += fmt::format("; cannot read {}-{}: {}", r.start, r.end, bytes.status().message());
      continue;
    }
    std::span<const uint8_t> b = *bytes;
    total += b.size();
    for (auto it = b.begin();;) {
      it = std::search(it, b.end(), searcher);
      if (it == b.end()) break;
      uint64_t hit = static_cast<uint64_t>(it - b.begin());
      ++it;
      if (hit < p.anchor_off) continue;
      uint64_t off = hit - p.anchor_off;
      TargetAddr at = r.start + static_cast<int64_t>(off);
      if (at.value() % p.align != 0 || off + p.pre.size() > b.size()) continue;
      Trial t = evaluate(i, at, b.subspan(off, p.pre.size()), "content search");
      if (t.outcome == Trial::Outcome::Matched) {
        ++hits;
        trials_[i].emplace(at, t);
        candidates_[i].emplace(at, "content search");
      } else if (!closest || t.prefix > closest->prefix) {
        closest = std::move(t);
      }
    }
  }
  std::string note = fmt::format("not found by content in {} bytes of {} range(s)", total, req.search.size());
  scan_notes_[i] = hits ? "" : note + scan_notes_[i];
  if (!hits && closest) {
    closest->origin = "content search, closest";
    trials_[i].emplace(closest->at, std::move(*closest));
  }
  ctx_.note(fmt::format("content search for {}: {} match(es) in {} bytes", req.label, hits, total));
  return hits > 0;
}

std::string Matcher::failure(size_t i) const {
  const Request& req = requests_[i];
  std::vector<const Trial*> matched, contradicted, other;
  for (const auto& [addr, t] : trials_[i]) {
    if (t.outcome != Trial::Outcome::Matched) other.push_back(&t);
    else if (conflict(i, t)) contradicted.push_back(&t);
    else matched.push_back(&t);
  }
  if (matched.size() > 1) {
    std::string list;
    for (const Trial* t : matched) list += fmt::format("{}{} ({})", list.empty() ? "" : ", ", t->at, t->origin);
    return fmt::format("{}: ambiguous, its pre code matches at {} and nothing tells them apart", req.label, list);
  }
  if (!contradicted.empty()) return *conflict(i, *contradicted.front());
  if (!other.empty()) {
    const Trial* best = *std::max_element(other.begin(), other.end(), [](const Trial* a, const Trial* b) {
      return a->prefix < b->prefix;
    });
    std::string s = best->report;
    if (best->origin != "symbol table") s += fmt::format(" (candidate from {})", best->origin);
    if (other.size() > 1) s += fmt::format("; closest of {} candidates", other.size());
    if (!scan_notes_[i].empty()) s += "; " + scan_notes_[i];
    return s;
  }
  if (req.candidates.empty() && req.search.empty()) return req.label + ": no candidate address and nothing to search";
  return fmt::format("{}: no candidate address; {}", req.label, scan_notes_[i].empty() ? "not searched" : scan_notes_[i]);
}

// A form that could not be a rewrite of the instruction it names is the target's bug.
Status Matcher::check_rewrites() const {
  for (const auto& [symbol, forms] : rewrites_.by_symbol)
    for (const RunForm& f : forms) {
      bool branch = f.branch != RunForm::Branch::None;
      size_t have = f.run.size() + (branch ? f.displacement + f.after.size() : 0);
      if (f.assembled.empty() || have != f.assembled.size() + 4 ||
          (branch && f.displacement != 1 && f.displacement != 4) || (!branch && !f.after.empty()))
        return error("run-time rewrite '{}' of '{}': a {}-byte form of a {}-byte instruction", f.name, symbol, have,
                     f.assembled.size() + 4);
    }
  return {};
}

Result<Match> Matcher::run() {
  if (update_.machine() != elf::Machine::X86_64) return error("{}: only x86-64 updates can be matched", update_.path());
  LS_TRY(check_rewrites());
  read_manifest();
  size_t n = requests_.size();
  preps_.resize(n);
  candidates_.resize(n);
  trials_.resize(n);
  at_.resize(n);
  scan_notes_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    LS_TRY(prepare(i));
    for (TargetAddr c : requests_[i].candidates) candidates_[i].emplace(c, "symbol table");
  }

  std::vector<bool> scanned(n, false);
  for (;;) {
    bool progress = false;
    for (size_t i = 0; i < n; ++i)
      if (!at_[i] && try_commit(i)) progress = true;
    if (progress) continue;
    // Nothing more from candidates: search by content for one request that has no
    // matching candidate at all, then go round again.
    for (size_t i = 0; i < n && !progress; ++i) {
      if (at_[i] || scanned[i] || requests_[i].search.empty()) continue;
      // Ambiguous requests wait for constraints; a byte-for-byte match that contradicts
      // what is established is no match, so the real function may be elsewhere.
      bool any = std::any_of(trials_[i].begin(), trials_[i].end(), [&](const auto& kv) {
        return kv.second.outcome == Trial::Outcome::Matched && !conflict(i, kv.second);
      });
      if (any) continue;
      scanned[i] = true;
      scan(i);
      progress = true;
    }
    if (!progress) break;
  }

  std::string failures;
  size_t failed = 0;
  for (size_t i = 0; i < n; ++i)
    if (!at_[i]) failures += (failed++ ? "\n" : "") + failure(i);
  if (failed) return Status::error(failed == 1 ? failures : fmt::format("{} functions did not match:\n{}", failed, failures),
                                   Exit::Unsafe);

  Match m;
  for (size_t i = 0; i < n; ++i) m.function_at.push_back(*at_[i]);
  auto exported = [](Reveal r) -> std::optional<View> {
    switch (r) {
      case Reveal::Address: return View::Address;
      case Reveal::GotSlot: return View::GotSlot;
      case Reveal::TlsOffset: return View::TlsOffset;
      case Reveal::TlsGotSlot: return View::TlsGotSlot;
      case Reveal::TlsGdPair: return View::TlsGdPair;
      default: return std::nullopt;
    }
  };
  for (const auto& [key, res] : established_)
    if (auto v = exported(key.view)) m.symbols.emplace(std::make_pair(key.symbol, *v), res);
  for (size_t i = 0; i < n; ++i)
    for (uint32_t a : preps_[i].aliases)
      m.symbols.emplace(std::make_pair(a, View::Address), Resolution{*at_[i], requests_[i].label + " matched here"});
  return m;
}

}  // namespace

const std::vector<RunForm>* Rewrites::forms_for(std::string_view symbol) const {
  if (by_symbol.empty()) return nullptr;
  if (auto it = by_symbol.find(std::string(symbol)); it != by_symbol.end()) return &it->second;
  for (const auto& [key, forms] : by_symbol)
    if (key.ends_with('*') && symbol.starts_with(std::string_view(key).substr(0, key.size() - 1))) return &forms;
  return nullptr;
}

Result<Match> match(Context& ctx, const CodeSource& run, const elf::Object& update, const std::vector<Request>& requests,
                    const Rewrites& rewrites) {
  return Matcher(ctx, run, update, requests, rewrites).run();
}

}  // namespace ls::match
