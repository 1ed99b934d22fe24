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
// must be equal, each site is read by the architecture (arch::Target::read_site), which
// knows what linkers rewrite around a field and what the field then holds.
//
// A target may rewrite its own code after loading it (the kernel turns `call __fentry__`
// into a NOP and `jmp __x86_return_thunk` into `ret`). Those rewrites come in as data
// (Rewrites): per symbol a relocation names, the forms its instruction may take. They are
// tried before the linker's reading, and only at sites naming that symbol, so a NOP is
// still a difference anywhere else; a rewritten site reveals nothing. Places the target
// rewrites whole, found in its own tables rather than by a relocation (the kernel's
// alternatives and jump labels), come as RewrittenSites: per function, a range and the
// exact forms it may take, whose call and jump fields must reach the same places.
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

#include "arch/target.h"
#include "elf/relocs.h"
#include "matcher/internal.h"
#include "update/format.h"

namespace ls::match {
namespace detail {

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

std::string Matcher::symbol_name(uint32_t sym) const {
  if (sym == 0) return "(no symbol)";
  return sym < update_.symbols().size() ? update_.symbol(sym).name : fmt::format("symbol #{}", sym);
}

// The pre literal pool (`.livesplice.pre.rodata.foo.str1.1`) a symbol of the update
// is defined in, or nullptr.
const elf::Section* Matcher::carried_pool(uint32_t sym) const {
  if (sym == 0 || sym >= update_.symbols().size() || !update_.symbol(sym).in_section()) return nullptr;
  const elf::Section& s = update_.section(update_.symbol(sym).section);
  bool pool = update::carries_object_section(s.name, update::kPrePrefix) && !s.exec() && !s.nobits() && s.entsize > 0 &&
              (s.merge_strings() || s.merge_constants());
  return pool ? &s : nullptr;
}

bool Matcher::literal(uint32_t sym) const {
  if (carried_pool(sym)) return true;
  if (const update::RunSymbol* rs = contents_.run_symbol(sym)) return rs->section && literal_pool_name(rs->name);
  return sym < update_.symbols().size() && literal_pool_name(update_.symbol(sym).name);
}

Status Matcher::prepare(size_t i) {
  const Request& req = requests_[i];
  Prepared& p = preps_[i];
  p.req = &req;
  if (req.pre_section == 0 || req.pre_section >= update_.sections().size())
    return error("{}: pre section {} is not a section of {}", req.label, req.pre_section, update_.path());
  const elf::Section& sec = update_.section(req.pre_section);
  if (!update::carries_object_section(sec.name, update::kPrePrefix) || sec.nobits() || sec.bytes.empty())
    return error("{}: section {} ({}) of {} is not pre code", req.label, req.pre_section, sec.name, update_.path());
  p.pre = sec.bytes;
  p.align = std::max<uint64_t>(sec.align, 1);
  for (const auto& r : sec.relocs)
    if (r.kind != elf::RelocKind::None) p.relocs.push_back(r);
  std::vector<arch::OperandField> operands;   // decoded only if some site names a literal
  for (size_t k = 0; k < p.relocs.size(); ++k) {
    const elf::Reloc& r = p.relocs[k];
    if (std::string why = arch_->site_unsupported(p.pre, p.relocs, k); !why.empty())
      return error("{}+{:#x}: cannot match {} against '{}': {}", req.label, r.offset, elf::reloc_name(update_.machine(), r.type),
                   symbol_name(r.symbol), why);
    if (r.kind == elf::RelocKind::TlsLd) p.has_tls_ld = true;
    p.fields[r.offset] = arch::FieldSymbol{r.kind, symbol_name(r.symbol), r.addend};
    if (const elf::Section* pool = carried_pool(r.symbol)) {
      // A PC-relative addend has the distance to the end of the instruction folded in.
      int64_t bias = 0;
      if (elf::is_pc_relative(r.kind)) {
        if (operands.empty()) operands = arch_->operand_fields(p.pre);
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
    arch::Extent e = arch_->site_extent(p.pre, r);
    std::fill(variable.begin() + static_cast<ptrdiff_t>(e.begin), variable.begin() + static_cast<ptrdiff_t>(e.end), true);
    if (const auto* forms = rewrites_.forms_for(symbol_name(r.symbol)))
      for (const RunForm& f : *forms)
        if (r.offset >= f.assembled.size())
          std::fill(variable.begin() + static_cast<ptrdiff_t>(r.offset - f.assembled.size()),
                    variable.begin() + static_cast<ptrdiff_t>(std::min<uint64_t>(r.offset + 4, p.pre.size())), true);
  }
  if (auto it = rewrites_.sites.find(req.pre_section); it != rewrites_.sites.end() && !it->second.empty()) {
    p.sites = &it->second;
    for (const RewrittenSite& s : it->second) {
      if (s.offset + s.size > p.pre.size())
        return error("{}+{:#x}: {} of {} bytes runs past the function's end ({:#x})", req.label, s.offset, s.what,
                     s.size, p.pre.size());
      std::fill_n(variable.begin() + static_cast<ptrdiff_t>(s.offset), s.size, true);
    }
  }
  // Jumps and padding may be encoded otherwise in run (see compare.cc): never part of an
  // anchor, and everything after the first of them may sit at another offset in run.
  uint64_t first_shift = p.pre.size(), short_jumps = 0;
  {
    size_t k = 0;
    for (uint64_t at = 0; at < p.pre.size();) {
      auto d = arch_->decode(p.pre, at);
      if (!d) break;
      while (k < p.relocs.size() && p.relocs[k].offset < at) ++k;
      const bool site = k < p.relocs.size() && p.relocs[k].offset < at + d->length;
      if ((d->branch && (!site || !d->short_branch)) || (d->nop && !site)) {
        p.relaxable = true;
        first_shift = std::min(first_shift, at);
        if (d->short_branch) ++short_jumps;
        std::fill(variable.begin() + static_cast<ptrdiff_t>(at),
                  variable.begin() + static_cast<ptrdiff_t>(at + d->length), true);
      }
      at += d->length;
    }
  }
  // Run may be longer: each short jump long (4 more bytes), more padding (at most 15 a place).
  p.slack = p.relaxable ? 4 * short_jumps + std::max<uint64_t>(64, p.pre.size() / 8) : 0;
  constexpr uint64_t kAnchorMax = 32;   // long enough to be rare, short enough to be cheap
  constexpr uint64_t kAnchorEnough = 12;
  auto longest = [&](uint64_t limit) {
    std::pair<uint64_t, uint64_t> best{0, 0};   // offset, length
    for (uint64_t k = 0, run = 0; k <= limit; ++k) {
      if (k < limit && !variable[k]) {
        ++run;
        continue;
      }
      if (run > best.second) best = {k - run, run};
      run = 0;
    }
    return best;
  };
  // Preferably before the first jump or padding, where run's offsets are pre's.
  auto [off, len] = longest(first_shift);
  if (len < kAnchorEnough) std::tie(off, len) = longest(p.pre.size());
  p.anchor_off = off;
  p.anchor_len = std::min(len, kAnchorMax);

  // The run symbols other functions' code uses to name this one.
  if (auto f = functions_by_section_.find(req.pre_section); f != functions_by_section_.end()) {
    const update::FunctionPatch& fn = *f->second;
    p.local = fn.local;
    for (const update::RunSymbol& rs : contents_.run_symbols) {
      if (rs.section || rs.local != fn.local || (rs.local && rs.object != fn.object)) continue;
      if (rs.name == fn.name || rs.name == fn.name + ".localalias") p.aliases.push_back(rs.index);
    }
  }
  return {};
}

const Trial& Matcher::trial(size_t i, TargetAddr at, const std::string& origin) {
  if (auto it = trials_[i].find(at); it != trials_[i].end()) return it->second;
  const Prepared& p = preps_[i];
  // Read past pre's length where run may be longer; near the end of a mapping, only pre's.
  std::vector<uint8_t> bytes(p.pre.size() + p.slack);
  Status s = run_.read(at, bytes);
  if (!s.ok() && p.slack) {
    bytes.resize(p.pre.size());
    s = run_.read(at, bytes);
  }
  Trial t;
  if (!s.ok()) {
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
      Trial t = evaluate(i, at, b.subspan(off, std::min<uint64_t>(p.pre.size() + p.slack, b.size() - off)),
                         "content search");
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
  for (const auto& [section, sites] : rewrites_.sites)
    for (size_t k = 0; k < sites.size(); ++k) {
      const RewrittenSite& s = sites[k];
      if (k > 0 && sites[k - 1].offset + sites[k - 1].size > s.offset)
        return error("rewritten sites of section {} overlap at +{:#x}", section, s.offset);
      for (const SiteForm& f : s.forms) {
        bool ok = f.bytes.size() == s.size;
        for (const auto& x : f.fields) ok = ok && (x.width == 1 || x.width == 4) && x.at + x.width <= s.size;
        if (!ok) return error("{} at +{:#x} of section {}: form '{}' does not fit its {} bytes", s.what, s.offset,
                              section, f.name, s.size);
      }
    }
  return {};
}

Result<Match> Matcher::run() {
  auto arch = arch::checked_target(update_.machine());
  if (!arch) return std::move(arch).status().context(update_.path());
  arch_ = *arch;
  LS_TRY(check_rewrites());
  // The manifest ties pre sections to functions (a hand-made object has none: matching
  // then works without feeding call sites back).
  for (const update::FunctionPatch& f : contents_.functions)
    if (f.pre_section != 0) functions_by_section_[f.pre_section] = &f;
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
  for (size_t i = 0; i < n; ++i) {
    m.function_at.push_back(*at_[i]);
    m.function_size.push_back(trials_[i].at(*at_[i]).run_size);
  }
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

}  // namespace detail

Result<Match> match(Context& ctx, const CodeSource& run, const update::Contents& update,
                    const std::vector<Request>& requests, const Rewrites& rewrites) {
  return detail::Matcher(ctx, run, update, requests, rewrites).run();
}

}  // namespace ls::match
