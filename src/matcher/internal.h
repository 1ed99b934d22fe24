// Run-pre matching's inner parts, shared by matcher.cc (where a function is: the fixed
// point over candidates, content search, reports) and compare.cc (whether the code at
// one address is the pre code: site by site, or instruction by instruction when the
// running build's assembler chose other encodings). Not an interface: only these two
// files include it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "arch/target.h"
#include "matcher/matcher.h"

namespace ls::match::detail {

using arch::Reveal;

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
  uint64_t run_size = 0;  // Matched: the function's length in run (pre's, unless encodings differ)
  std::string report;     // for Differs / Unreadable
  std::vector<Reading> reveals;
};

// GCC's literal pools (`.rodata.str1.1`, `.rodata.foo.str1.8`, `.rodata.cst16`): the
// linker merges them across objects, so offsets into one say nothing about another.
bool literal_pool_name(std::string_view name);

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
  // Whether the run build may encode this code otherwise (it has jumps or padding), and
  // how much longer than pre it may then be (bytes read past pre's length).
  bool relaxable = false;
  uint64_t slack = 0;
  const std::vector<RewrittenSite>* sites = nullptr;   // Rewrites::sites of its section
};

// What a rewritten site's form read: the reveals of its symbol fields, and for each
// field inside the function, pre's target and run's (offsets from the function's start).
struct FormRead {
  const SiteForm* form = nullptr;
  std::vector<std::pair<uint32_t, uint64_t>> symbols;   // symbol, address
  std::vector<std::pair<int64_t, int64_t>> inside;      // pre target, run target
};

class Matcher {
 public:
  Matcher(Context& ctx, const CodeSource& run, const update::Contents& update, const std::vector<Request>& requests,
          const Rewrites& rewrites)
      : ctx_(ctx), run_(run), contents_(update), update_(update.file), requests_(requests), rewrites_(rewrites) {}

  Result<Match> run();

 private:
  Status prepare(size_t i);
  Trial evaluate(size_t i, TargetAddr at, std::span<const uint8_t> bytes, std::string origin) const;
  void compare(size_t i, Trial& t, std::span<const uint8_t> bytes) const;
  void compare_relaxed(size_t i, Trial& t, std::span<const uint8_t> run) const;
  // What compare and compare_relaxed share: taking in what one site read, and the end of
  // a comparison whose code was equal (literals, then the function's own names).
  struct Walk {
    std::map<Key, size_t> seen;   // -> index in Trial::reveals
    std::vector<std::pair<uint64_t, TargetAddr>> literal_sites;   // field offset, literal's run address
  };
  bool take_site(size_t i, Trial& t, Walk& w, size_t k, const arch::SiteRead& s) const;
  void finish(size_t i, Trial& t, const Walk& w) const;
  const RunForm* rewritten(size_t i, size_t k, std::span<const uint8_t> bytes, uint64_t pos, bool& inward) const;
  std::optional<FormRead> site_form(const RewrittenSite& s, std::span<const uint8_t> run, uint64_t run_off,
                                    TargetAddr at, bool same_offsets) const;
  bool take_form(size_t i, Trial& t, Walk& w, const RewrittenSite& s, const FormRead& f) const;
  bool take_reading(size_t i, Trial& t, Walk& w, uint32_t symbol, Reveal view, uint64_t value, uint64_t site,
                    std::string evidence) const;
  Status check_rewrites() const;
  std::string differs_report(size_t i, TargetAddr at, std::span<const uint8_t> bytes, uint64_t off) const;
  std::string differs_report(size_t i, TargetAddr at, std::span<const uint8_t> run, uint64_t pre_off,
                             uint64_t run_off) const;
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
  const update::Contents& contents_;
  const elf::Object& update_;   // contents_.file
  const std::vector<Request>& requests_;
  const Rewrites& rewrites_;
  const arch::Target* arch_ = nullptr;   // the update's machine, chosen first thing in run()

  std::map<uint32_t, const update::FunctionPatch*> functions_by_section_;   // pre section -> the function
  std::vector<Prepared> preps_;
  std::vector<std::map<TargetAddr, std::string>> candidates_;   // per request: address -> origin
  std::vector<std::map<TargetAddr, Trial>> trials_;
  std::vector<std::optional<TargetAddr>> at_;
  std::vector<std::string> scan_notes_;
  std::map<Key, Resolution> established_;
  std::map<std::pair<uint64_t, uint64_t>, std::vector<uint8_t>> ranges_;
};

}  // namespace ls::match::detail
