// Whether the code at one address of a target is an update's pre code (see matcher.h
// for what matching promises, matcher.cc for how candidates are found).
//
// What is hard: the running build and pre are compiled from the same source with the
// same compiler, but not always assembled alike. pre has one section per function; a
// distribution builds with one .text, where gas may resolve a jump to a nearby function
// itself (a short jump, no relocation) and chooses short or long forms of jumps inside a
// function, and so the padding before aligned loops, by a different layout. The plain
// comparison (bytes at equal offsets, relocation sites read by the architecture) is
// tried first; when it fails, the instruction walk maps pre offsets to run offsets,
// accepting either width of a jump whose target maps to the same place, and padding of
// any length. Everything else must still be the same instruction, byte for byte.

#include <algorithm>
#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "matcher/internal.h"

namespace ls::match::detail {

std::string hex_bytes(std::span<const uint8_t> b, uint64_t from, uint64_t n) {
  std::string s;
  for (uint64_t k = from; k < std::min<uint64_t>(b.size(), from + n); ++k) s += fmt::format("{}{:02x}", s.empty() ? "" : " ", b[k]);
  return s;
}

std::string Matcher::differs_report(size_t i, TargetAddr at, std::span<const uint8_t> bytes, uint64_t off) const {
  const Prepared& p = preps_[i];
  auto want = arch_->disassemble(p.pre, off, at.value(), p.fields);
  auto got = arch_->disassemble(bytes, off, at.value());
  std::string expected = want ? want->text : "bytes " + hex_bytes(p.pre, off, 8);
  std::string found = got ? got->text : "bytes " + hex_bytes(bytes, off, 8);
  if (expected == found && want && got)   // same text, different encoding (e.g. a prefix)
    expected += " [" + hex_bytes(p.pre, want->start, want->length) + "]",
        found += " [" + hex_bytes(bytes, got->start, got->length) + "]";
  return fmt::format("{} at {}+{:#x}: run code differs from pre: expected '{}', found '{}'", p.req->label, at, off,
                     expected, found);
}

// The same, when the run instruction at hand is at another offset than pre's.
std::string Matcher::differs_report(size_t i, TargetAddr at, std::span<const uint8_t> run, uint64_t pre_off,
                                    uint64_t run_off) const {
  if (pre_off == run_off) return differs_report(i, at, run, pre_off);
  const Prepared& p = preps_[i];
  auto want = arch_->disassemble(p.pre, pre_off, at.value() + run_off - pre_off, p.fields);
  auto got = arch_->disassemble(run, run_off, at.value());
  std::string expected = want ? want->text : "bytes " + hex_bytes(p.pre, pre_off, 8);
  std::string found = got ? got->text : "bytes " + hex_bytes(run, run_off, 8);
  return fmt::format("{} at {}+{:#x} (pre +{:#x}): run code differs from pre: expected '{}', found '{}'",
                     p.req->label, at, run_off, pre_off, expected, found);
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

// Takes in what site relocs[k] read; false (and `t` says why) when it contradicts an
// earlier site of the same symbol or pre's absolute value.
bool Matcher::take_site(size_t i, Trial& t, Walk& w, size_t k, const arch::SiteRead& s) const {
  const Prepared& p = preps_[i];
  const elf::Reloc& r = p.relocs[k];
  if (s.reveals && s.view == Reveal::Address && p.literals.count(r.offset))
    w.literal_sites.emplace_back(r.offset, TargetAddr(s.value + static_cast<uint64_t>(p.literals.at(r.offset).delta)));
  if (!s.reveals || literal(r.symbol)) return true;
  if (r.symbol == 0) {   // an absolute value: nothing to learn, but it must be what pre says
    if (s.value == 0) return true;
    t.outcome = Trial::Outcome::Differs;
    t.prefix = r.offset;
    t.report = fmt::format("{} at {}: the absolute value at pre +{:#x} is {:#x} in run, 0 in pre", p.req->label,
                           t.at, r.offset, s.value);
    return false;
  }
  std::string evidence = fmt::format("{}+{:#x}", p.req->label, r.offset);
  if (!s.form.empty()) evidence += fmt::format(" ({})", s.form);
  return take_reading(i, t, w, r.symbol, s.view, s.value, r.offset, std::move(evidence));
}

bool Matcher::take_reading(size_t i, Trial& t, Walk& w, uint32_t symbol, Reveal view, uint64_t value, uint64_t site,
                           std::string evidence) const {
  t.reveals.push_back(Reading{{symbol, view}, value, site, std::move(evidence)});
  const Reading& now = t.reveals.back();
  auto [it, fresh] = w.seen.emplace(now.key, t.reveals.size() - 1);
  if (fresh || t.reveals[it->second].value == now.value) return true;
  const Reading& then = t.reveals[it->second];
  t.outcome = Trial::Outcome::Differs;
  t.prefix = site;
  t.report = fmt::format("{} at {}+{:#x}: '{}' ({}) is {:#x} here but {:#x} at +{:#x}", preps_[i].req->label, t.at,
                         site, symbol_name(symbol), arch::to_string(view), now.value, then.value, then.site);
  return false;
}

// The form of rewritten site `s` that run's bytes at `run_off` (from the function's start
// at `at`) take, if any. `same_offsets`: run's code is at pre's offsets, so a field
// inside the function must reach pre's very target (else the caller maps it).
std::optional<FormRead> Matcher::site_form(const RewrittenSite& s, std::span<const uint8_t> run, uint64_t run_off,
                                           TargetAddr at, bool same_offsets) const {
  if (run_off + s.size > run.size()) return std::nullopt;
  std::optional<FormRead> found;
  for (const SiteForm& f : s.forms) {
    std::vector<bool> field(s.size, false);
    for (const auto& x : f.fields) std::fill_n(field.begin() + static_cast<ptrdiff_t>(x.at), x.width, true);
    bool same = true;
    for (uint64_t k = 0; k < s.size && same; ++k) same = field[k] || f.bytes[k] == run[run_off + k];
    if (!same) continue;
    FormRead r;
    r.form = &f;
    for (const auto& x : f.fields) {
      const uint8_t* d = run.data() + run_off + x.at;
      int64_t disp = 0;
      if (x.width == 1) {
        disp = static_cast<int8_t>(*d);
      } else {
        int32_t d32 = 0;
        std::memcpy(&d32, d, sizeof d32);
        disp = d32;
      }
      const int64_t to = static_cast<int64_t>(run_off + x.at + x.width) + disp;   // from the function's start
      if (x.symbol == 0) {
        if (same_offsets && to != x.target) same = false;
        r.inside.emplace_back(x.target, to);
      } else {
        r.symbols.emplace_back(x.symbol, static_cast<uint64_t>(static_cast<int64_t>(at.value()) + to - x.target));
      }
    }
    if (!same) continue;
    // Two forms that read alike but for what their fields name (ALTERNATIVE_CALL: a call
    // to the original's function or the replacement's) match, and reveal neither.
    if (found && found->symbols != r.symbols) found->symbols.clear();
    if (!found) found = std::move(r);
  }
  return found;
}

bool Matcher::take_form(size_t i, Trial& t, Walk& w, const RewrittenSite& s, const FormRead& f) const {
  for (const auto& [symbol, addr] : f.symbols)
    if (!take_reading(i, t, w, symbol, Reveal::Address, addr, s.offset,
                      fmt::format("{}+{:#x} ({}: {})", preps_[i].req->label, s.offset, s.what, f.form->name)))
      return false;
  return true;
}

void Matcher::finish(size_t i, Trial& t, const Walk& w) const {
  const Prepared& p = preps_[i];
  // The code is the same; the literals it uses must be too (read only now, so that
  // candidates whose code differs cost no reads).
  for (const auto& [site, run_at] : w.literal_sites)
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
      t.reveals.push_back(Reading{{a, Reveal::Address}, t.at.value(), 0, fmt::format("{} matched here", p.req->label)});
  t.outcome = Trial::Outcome::Matched;
  t.prefix = p.pre.size();
}

// Bytes at equal offsets; `bytes` is exactly as long as pre.
void Matcher::compare(size_t i, Trial& t, std::span<const uint8_t> bytes) const {
  const Prepared& p = preps_[i];
  const uint64_t base = t.at.value();
  auto differ_at = [&](uint64_t off) {
    t.outcome = Trial::Outcome::Differs;
    t.prefix = off;
    t.report = differs_report(i, t.at, bytes, off);
  };
  std::function<uint64_t(uint64_t, uint64_t)> equal_until = [&](uint64_t lo, uint64_t hi) {
    for (uint64_t k = lo; k < hi; ++k)
      if (p.pre[k] != bytes[k]) return k;
    return hi;
  };
  // ld rewrites local-dynamic TLS for a whole executable; then DTPOFF fields hold tp offsets.
  bool dtpoff_is_tpoff = false;
  for (size_t k = 0; p.has_tls_ld && k < p.relocs.size(); ++k)
    if (p.relocs[k].kind == elf::RelocKind::TlsLd &&
        arch_->read_site(p.pre, bytes, p.relocs, k, base, false).tls_ld_relaxed)
      dtpoff_is_tpoff = true;

  Walk w;
  // Rewritten sites in one of their forms: compared here, skipped by the walk below
  // (their bytes and relocations); a site in none of its forms is compared as pre has it.
  std::vector<std::pair<uint64_t, uint64_t>> taken;   // [begin, end)
  if (p.sites)
    for (const RewrittenSite& s : *p.sites)
      if (auto f = site_form(s, bytes, s.offset, t.at, true)) {
        if (!take_form(i, t, w, s, *f)) return;
        taken.emplace_back(s.offset, s.offset + s.size);
      }
  if (!taken.empty()) {
    auto plain = equal_until;
    equal_until = [&taken, plain](uint64_t lo, uint64_t hi) {
      for (const auto& [b, e] : taken) {
        if (e <= lo || b >= hi) continue;
        if (uint64_t d = plain(lo, std::max(lo, b)); d < std::max(lo, b)) return d;
        lo = std::max(lo, e);
      }
      return lo < hi ? plain(lo, hi) : hi;
    };
  }
  auto in_taken = [&](uint64_t off) {
    return std::any_of(taken.begin(), taken.end(), [&](const auto& r) { return off >= r.first && off < r.second; });
  };
  uint64_t pos = 0;
  for (size_t k = 0; k < p.relocs.size();) {
    const elf::Reloc& r = p.relocs[k];
    if (in_taken(r.offset)) {
      ++k;
      continue;
    }
    bool inward = false;
    if (const RunForm* f = rewritten(i, k, bytes, pos, inward)) {
      uint64_t start = r.offset - f->assembled.size();
      if (uint64_t d = equal_until(pos, start); d < start) return differ_at(d);
      pos = r.offset + 4;
      ++k;
      continue;
    }
    if (inward) return differ_at(r.offset);
    arch::SiteRead s = arch_->read_site(p.pre, bytes, p.relocs, k, base, dtpoff_is_tpoff);
    uint64_t begin = std::max(pos, s.outcome == arch::SiteRead::Outcome::Read ? s.begin
                                                                              : arch_->site_extent(p.pre, r).begin);
    if (uint64_t d = equal_until(pos, begin); d < begin) return differ_at(d);
    if (s.outcome == arch::SiteRead::Outcome::Differs) return differ_at(std::max(s.offset, pos));
    pos = std::max(pos, s.end);
    if (!take_site(i, t, w, k, s)) return;
    k += s.relocs;
  }
  if (uint64_t d = equal_until(pos, p.pre.size()); d < p.pre.size()) return differ_at(d);
  finish(i, t, w);
  if (t.outcome == Trial::Outcome::Matched) t.run_size = p.pre.size();
}

// Instruction by instruction, pre offsets mapped to run offsets as the walk goes:
//  - padding (NOPs of any length, in either) is skipped on each side;
//  - a jump inside the function may be short in one and long in the other; its target
//    must map to its run target (checked at the end, when every label is mapped);
//  - a jump to another function, a relocation site in pre, may be a short jump in run
//    (gas resolved it within .text): it is read as the long form it stands for;
//  - every other instruction is the same bytes, relocation sites read as usual with
//    run's bytes moved to pre's offsets (ld's rewrites never change an instruction's
//    length).
void Matcher::compare_relaxed(size_t i, Trial& t, std::span<const uint8_t> run) const {
  const Prepared& p = preps_[i];
  const uint64_t size = p.pre.size();
  std::map<uint64_t, uint64_t> run_of;   // pre offset of an instruction -> its run offset
  struct Jump {
    uint64_t pre_at, run_at;
    int64_t pre_target, run_target;
  };
  std::vector<Jump> jumps;
  std::vector<uint8_t> moved(size, 0);   // run bytes of the instruction at hand, at pre's offsets
  bool dtpoff_is_tpoff = false;
  Walk w;
  uint64_t po = 0, ro = 0;
  size_t k = 0;
  auto differ_at = [&](uint64_t pre_off, uint64_t run_off) {
    t.outcome = Trial::Outcome::Differs;
    t.prefix = pre_off;
    t.report = differs_report(i, t.at, run, pre_off, run_off);
  };
  // Whether the next site begins before `to` (sites before the walk's place are done).
  auto site_in = [&](uint64_t to) { return k < p.relocs.size() && p.relocs[k].offset < to; };
  auto skip_padding = [this](std::span<const uint8_t> code, uint64_t& at, uint64_t limit) {
    while (at < limit) {
      auto d = arch_->decode(code.first(limit), at);
      if (!d || !d->nop) break;
      at += d->length;
    }
  };

  size_t ns = 0;   // the next rewritten site
  auto rewritten_at = [&](uint64_t off) {
    while (p.sites && ns < p.sites->size() && (*p.sites)[ns].offset < off) ++ns;
    return p.sites && ns < p.sites->size() && (*p.sites)[ns].offset == off ? &(*p.sites)[ns] : nullptr;
  };

  while (po < size) {
    // A rewritten site in one of its forms (after padding only run has, if need be);
    // in none, it is compared as pre has it, below.
    if (const RewrittenSite* rs = rewritten_at(po)) {
      uint64_t at = ro;
      auto f = site_form(*rs, run, at, t.at, false);
      if (!f) {
        skip_padding(run, at, run.size());
        if (at != ro) f = site_form(*rs, run, at, t.at, false);
      }
      if (f) {
        if (!take_form(i, t, w, *rs, *f)) return;
        run_of.emplace(po, at);
        for (auto [pre_target, run_target] : f->inside) jumps.push_back({po, at, pre_target, run_target});
        po += rs->size;
        ro = at + rs->size;
        while (k < p.relocs.size() && p.relocs[k].offset < po) ++k;
        continue;
      }
    }
    auto dp = arch_->decode(p.pre, po);
    if (!dp) return differ_at(po, ro);
    const uint64_t pend = po + dp->length;
    const bool site = site_in(pend);
    if (dp->nop && !site && !rewritten_at(po)) {
      run_of.emplace(po, ro);
      while (po < size) {   // the whole padding, up to a site
        auto d = arch_->decode(p.pre, po);
        if (!d || !d->nop || site_in(po + d->length) || rewritten_at(po)) break;
        po += d->length;
      }
      skip_padding(run, ro, run.size());
      continue;
    }
    // Padding only run has. Not before a site the target itself may turn into a NOP.
    const bool own_rewrite = site && rewrites_.forms_for(symbol_name(p.relocs[k].symbol)) != nullptr;
    if (!own_rewrite) skip_padding(run, ro, run.size());
    run_of.emplace(po, ro);
    if (ro >= run.size()) return differ_at(po, ro);
    auto dr = arch_->decode(run, ro);

    if (site) {
      const elf::Reloc& first = p.relocs[k];
      const int64_t delta = static_cast<int64_t>(ro) - static_cast<int64_t>(po);
      constexpr uint64_t kWindow = 48;   // longer than any site's instructions (a TLS sequence is 16)
      for (uint64_t x = po; x < std::min(size, po + kWindow); ++x) {
        uint64_t from = static_cast<uint64_t>(static_cast<int64_t>(x) + delta);
        moved[x] = from < run.size() ? run[from] : 0;
      }
      uint64_t run_len = 0;   // when run's instruction is not pre's length
      // (Not where the target rewrites its own code: its table says what such a site may be.)
      if (!own_rewrite && dp->branch && !dp->short_branch && dr && dr->branch && dr->short_branch &&
          dr->mnemonic == dp->mnemonic &&
          first.offset + 4 == pend && elf::is_pc_relative(first.kind) && first.width == 4) {
        // The long form it stands for: pre's opcode, run's target.
        std::copy(p.pre.begin() + static_cast<ptrdiff_t>(po), p.pre.begin() + static_cast<ptrdiff_t>(first.offset),
                  moved.begin() + static_cast<ptrdiff_t>(po));
        auto disp = static_cast<int32_t>(dr->target - delta - static_cast<int64_t>(pend));
        std::memcpy(moved.data() + first.offset, &disp, sizeof disp);
        run_len = dr->length;
      }
      const uint64_t run_base = static_cast<uint64_t>(static_cast<int64_t>(t.at.value()) + delta);
      uint64_t pos = po, cover = pend;
      while (k < p.relocs.size() && p.relocs[k].offset < cover) {
        const elf::Reloc& r = p.relocs[k];
        auto equal_until = [&](uint64_t lo, uint64_t hi) {
          for (uint64_t x = lo; x < hi; ++x)
            if (p.pre[x] != moved[x]) return x;
          return hi;
        };
        bool inward = false;
        if (const RunForm* f = rewritten(i, k, moved, pos, inward)) {
          uint64_t start = r.offset - f->assembled.size();
          if (uint64_t d = equal_until(pos, start); d < start) return differ_at(d, d + delta);
          pos = r.offset + 4;
          cover = std::max(cover, pos);
          ++k;
          continue;
        }
        if (inward) return differ_at(r.offset, r.offset + delta);
        arch::SiteRead s = arch_->read_site(p.pre, moved, p.relocs, k, run_base, dtpoff_is_tpoff);
        if (r.kind == elf::RelocKind::TlsLd && s.tls_ld_relaxed) dtpoff_is_tpoff = true;
        uint64_t begin = std::max(pos, s.outcome == arch::SiteRead::Outcome::Read
                                           ? s.begin
                                           : arch_->site_extent(p.pre, r).begin);
        if (uint64_t d = equal_until(pos, begin); d < begin) return differ_at(d, d + delta);
        if (s.outcome == arch::SiteRead::Outcome::Differs) {
          uint64_t d = std::max(s.offset, pos);
          return differ_at(d, d + delta);
        }
        pos = std::max(pos, s.end);
        cover = std::max(cover, s.end);
        if (!take_site(i, t, w, k, s)) return;
        k += s.relocs;
      }
      for (uint64_t x = pos; x < cover; ++x)
        if (p.pre[x] != moved[x]) return differ_at(x, x + delta);
      ro += run_len ? run_len : cover - po;
      po = cover;
      continue;
    }

    if (dp->branch) {
      if (!dr || !dr->branch || dr->mnemonic != dp->mnemonic) return differ_at(po, ro);
      jumps.push_back({po, ro, dp->target, dr->target});
      po = pend;
      ro += dr->length;
      continue;
    }
    if (ro + dp->length > run.size()) return differ_at(po, ro);
    for (uint64_t x = 0; x < dp->length; ++x)
      if (p.pre[po + x] != run[ro + x]) return differ_at(po + x, ro + x);
    po = pend;
    ro += dp->length;
  }
  run_of.emplace(po, ro);
  for (const Jump& j : jumps) {
    auto to = j.pre_target >= 0 ? run_of.find(static_cast<uint64_t>(j.pre_target)) : run_of.end();
    if (to != run_of.end() && static_cast<int64_t>(to->second) == j.run_target) continue;
    t.outcome = Trial::Outcome::Differs;
    t.prefix = size;   // every instruction was the same: closer than any that differs
    t.report = differs_report(i, t.at, run, j.pre_at, j.run_at);
    t.report += to == run_of.end()
                    ? fmt::format(" (pre's target +{:#x} is not an instruction of it)", j.pre_target)
                    : fmt::format(" (pre's target +{:#x} is at {} in run)", j.pre_target,
                                  t.at + static_cast<int64_t>(to->second));
    return;
  }
  finish(i, t, w);
  if (t.outcome == Trial::Outcome::Matched) t.run_size = ro;
}

Trial Matcher::evaluate(size_t i, TargetAddr at, std::span<const uint8_t> bytes, std::string origin) const {
  const Prepared& p = preps_[i];
  Trial t;
  t.at = at;
  t.origin = std::move(origin);
  if (bytes.size() >= p.pre.size()) compare(i, t, bytes.first(p.pre.size()));
  if (t.outcome == Trial::Outcome::Matched || !p.relaxable) return t;
  Trial r;
  r.at = at;
  r.origin = t.origin;
  compare_relaxed(i, r, bytes);
  return r.outcome == Trial::Outcome::Matched || r.prefix > t.prefix ? r : t;
}

}  // namespace ls::match::detail
