// What matching and linking ask of a running process (see resolve.h).
#include "process/resolve.h"

namespace ls::proc {

Result<TargetAddr> RunSymbols::resolve(uint32_t sym, View view) const {
  auto hit = m_.symbols.find({sym, view});
  if (hit != m_.symbols.end()) return hit->second.value;
  const update::RunSymbol* rs = u_.run_symbol(sym);
  if (view == View::Address) {
    auto slot = m_.symbols.find({sym, View::GotSlot});
    if (slot != m_.symbols.end()) {
      auto v = target_.memory().read_value<uint64_t>(slot->second.value);
      if (v && *v != 0) return TargetAddr(*v);
      // A slot ld.so has not filled yet (0: a process held by `watch` after its objects
      // were mapped, before they are relocated): bound as ld.so will bind it, the
      // program's own definition first (it interposes, as a copy relocation does).
      if (v && rs && !rs->section && !rs->local && !target_.modules().empty())
        if (auto exe = target_.modules().front().lookup(rs->name, false, ""); exe.size() == 1) return exe.front();
    }
    if (rs && !rs->section) {
      auto found = definition(*rs);
      if (!found) return found.status();
      if (*found) return callable(*(*found)->module, rs->name, (*found)->at);
    }
  }
  return error("cannot resolve run symbol '{}' ({}): no pre code refers to it that way and no symbol table names it",
               rs ? rs->name : std::to_string(sym), to_string(view));
}

Result<std::optional<RunSymbols::Definition>> RunSymbols::definition(const update::RunSymbol& rs) const {
  // The function's own module first, then every module (globals from libraries).
  auto found = home_.lookup(rs.name, rs.local, rs.source);
  if (found.size() == 1) return std::optional(Definition{&home_, found.front()});
  if (found.size() > 1)
    return error("run symbol '{}' ({}): {} candidates in {} and no pre code refers to it to decide", rs.name,
                 rs.local ? "local to " + rs.source : "global", found.size(), home_.name);
  if (rs.local) return std::optional<Definition>();
  // A global its binary does not export is a local of that binary: hidden visibility,
  // or kept out of the dynamic symbols by a version script (`local: *;`, as libraries
  // that list their API do). The static linker bound the reference to that definition,
  // so it goes before other modules' globals. GNU ld puts such symbols in the group of
  // an empty STT_FILE, apart from each file's statics: a static of the same name is no
  // candidate there.
  const char* what = rs.hidden ? "hidden global" : "global, not exported";
  auto localized = home_.lookup_localized(rs.name);
  if (localized.size() == 1) return std::optional(Definition{&home_, localized.front()});
  if (localized.size() > 1)
    return error("run symbol '{}' ({}): {} local candidates in {} and no pre code refers to it to decide", rs.name,
                 what, localized.size(), home_.name);
  if (!rs.hidden)
    for (const auto& mod : target_.modules()) {
      if (&mod == &home_) continue;
      auto g = mod.lookup(rs.name, false, "");
      if (!g.empty()) return std::optional(Definition{&mod, g.front()});
    }
  // Linkers that give such symbols no group of their own (lld): when no other module
  // defines the name, the one local of that name in the binary is it.
  auto any = home_.lookup(rs.name, true, "");
  if (any.size() == 1) return std::optional(Definition{&home_, any.front()});
  if (any.size() > 1)
    return error("run symbol '{}' ({}): {} local candidates in {} and no pre code refers to it to decide", rs.name,
                 what, any.size(), home_.name);
  return std::optional<Definition>();
}

// A symbol table gives an indirect function's resolver; code calling it must get the
// implementation the resolver chose in this process.
Result<TargetAddr> RunSymbols::callable(const Module& mod, const std::string& name, TargetAddr at) const {
  for (const auto& sym : mod.symbols)
    if (sym.ifunc && sym.address == at && sym.name == name)
      return resolved_ifunc(target_.memory(), target_.modules(), mod, name, at);
  return at;
}

}  // namespace ls::proc
