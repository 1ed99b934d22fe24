// The running kernel's symbols, as /proc/kallsyms lists them.
//
// What is hard: kallsyms gives no sizes, names repeat (static functions of the same
// name in different objects, and in different modules), and addresses read as zero
// unless the reader may see them (root, kptr_restrict < 2). A symbol's extent here is
// the distance to the next symbol at a higher address in the same text (vmlinux or one
// module): an upper bound that includes padding, which is what the kernel's own
// sprint_symbol reports too. Matching, not this table, decides which of several
// same-named symbols an update means.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.h"
#include "base/result.h"

namespace ls::kernel {

struct KSymbol {
  std::string name;
  std::string module;   // "" for vmlinux
  TargetAddr addr;
  uint64_t size = 0;    // to the next symbol of the same module (0 for the last one)
  char type = '?';      // nm-style: t/T text, d/D data, r/R read-only, b/B bss, ...

  bool text() const { return type == 't' || type == 'T'; }
};

class Kallsyms {
 public:
  // Reads and indexes the table. Fails when it is unreadable or every address is zero
  // (not root, or kptr_restrict hides them).
  static Result<Kallsyms> read(const std::string& path = "/proc/kallsyms");
  // Parses text in the /proc/kallsyms format (tests).
  static Result<Kallsyms> parse(std::string_view text, std::string_view what);

  // Every symbol with this name, optionally only in one module ("vmlinux" = the core).
  std::vector<const KSymbol*> named(std::string_view name, std::optional<std::string_view> module = {}) const;
  // The one symbol with this name (in that module), or an error naming the candidates.
  Result<const KSymbol*> unique(std::string_view name, std::optional<std::string_view> module = {}) const;
  // The symbol whose extent contains addr, if any (the last one at or below it).
  const KSymbol* containing(TargetAddr addr) const;
  // The last symbol at or below addr, whatever its extent (ftrace's trampolines are
  // alone in their pseudo-module `[__builtin__ftrace]`, so they have no known size).
  const KSymbol* at_or_below(TargetAddr addr) const;

  const std::vector<KSymbol>& symbols() const { return syms_; }

 private:
  std::vector<KSymbol> syms_;         // sorted by address
};

}  // namespace ls::kernel
