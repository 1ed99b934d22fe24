// What matching and linking ask of a running process: its code, read where the matcher
// looks (TargetCode), and the values its run symbols have there (RunSymbols).
//
// What is hard is that a symbol's name is not its value. Run-pre matching is the
// evidence: what the pre code's references turned out to be in the running code wins.
// Symbol tables come after, and a name can have several candidates (a static in two
// files, a global a version script made local, an indirect function whose symbol is its
// resolver), each with its own way to decide or to refuse.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/addr.h"
#include "base/result.h"
#include "loader/link.h"
#include "matcher/matcher.h"
#include "process/modules.h"
#include "process/target.h"
#include "update/contents.h"

namespace ls::proc {

// A target's memory as the matcher reads code.
class TargetCode : public match::CodeSource {
 public:
  explicit TargetCode(const Target& target) : target_(target) {}
  Status read(TargetAddr at, std::span<uint8_t> out) const override { return target_.memory().read(at, out); }

 private:
  const Target& target_;
};

// Run symbols → target values: first what run-pre matching learned, then what can be
// derived from it (an address through a GOT slot), then symbol tables — the replaced
// functions' own module (`home`) first, then every module the target has mapped (its
// modules(), read).
class RunSymbols : public load::SymbolResolver {
 public:
  RunSymbols(const update::Contents& u, const match::Match& m, const Target& target, const Module& home)
      : u_(u), m_(m), target_(target), home_(home) {}

  Result<TargetAddr> resolve(uint32_t sym, View view) const override;

 private:
  // Where a symbol table defines `rs` (not a section symbol), or nullopt when none does;
  // an error when the candidates cannot be told apart.
  struct Definition {
    const Module* module;
    TargetAddr at;
  };
  Result<std::optional<Definition>> definition(const update::RunSymbol& rs) const;
  Result<TargetAddr> callable(const Module& mod, const std::string& name, TargetAddr at) const;

  const update::Contents& u_;
  const match::Match& m_;
  const Target& target_;
  const Module& home_;
};

}  // namespace ls::proc
