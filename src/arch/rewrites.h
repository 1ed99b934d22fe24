// Rewrites a running target makes of its own code, as data: what an instruction of pre
// code may look like in run once the target (the kernel, at boot and module load) has
// rewritten it. An architecture describes its kernel's forms (Target::kernel_rewrites,
// Target::kernel_table_sites); run-pre matching (src/matcher) accepts them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ls::arch {

// Rewrites a target makes of its own code after loading it, supplied by the target as
// data (the kernel's: Target::kernel_rewrites). Each applies to an instruction that ends in
// a 4-byte PC-relative field whose relocation names one symbol: the instruction may run
// as assembled (then read like any site) or in one of the listed forms. A rewritten site
// reveals nothing about its symbol: the bytes no longer name it.
struct RunForm {
  std::string name;                 // for messages: "ftrace NOP", "ret; int3"
  std::vector<uint8_t> assembled;   // pre's bytes before the field: {0xe8}, {0x0f, 0x84}
  // Fixed forms (Branch::None): the whole instruction in run (assembled.size() + 4
  // bytes). Branches: the bytes before the displacement, which is `displacement` bytes
  // (1 or 4) followed by `after` (padding), and whose target lies outside the function
  // (a trampoline or thunk the target chose) or inside it (a jump to one of its labels).
  std::vector<uint8_t> run;
  enum class Branch { None, Outside, Inside };
  Branch branch = Branch::None;
  unsigned displacement = 4;
  std::vector<uint8_t> after;
};
// A place in one function's pre code that the target rewrites whole, as tables the
// update carries say (the kernel's alternatives and jump labels: Target::kernel_table_sites
// turns the tables into these). The code there runs as pre has it (compared as usual)
// or as exactly one of `forms`: fixed bytes but for PC-relative displacements, each of
// which must reach a given place of the function or reveals a symbol's address.
struct SiteForm {
  std::string name;                 // for messages: "replacement", "jump label: jmp"
  std::vector<uint8_t> bytes;       // the whole site in run; a field's bytes are ignored
  struct Field {
    uint64_t at = 0;                // in the site; the displacement counts from the field's end
    unsigned width = 4;             // 1 or 4
    uint32_t symbol = 0;            // update symbol; 0: the field reaches `target`, an
    int64_t target = 0;             // offset in the function; else symbol + target
    bool operator==(const Field&) const = default;
  };
  std::vector<Field> fields;
  bool operator==(const SiteForm&) const = default;
};
struct RewrittenSite {
  std::string what;                 // "alternative", "jump label"
  uint64_t offset = 0, size = 0;    // in the pre section
  std::vector<SiteForm> forms;
};

struct Rewrites {
  // By the relocation's symbol name; a key ending in '*' is a prefix ("__SCT__*").
  std::map<std::string, std::vector<RunForm>> by_symbol;
  // By pre section (Request::pre_section): its rewritten sites, disjoint, by offset.
  std::map<uint32_t, std::vector<RewrittenSite>> sites;
  const std::vector<RunForm>* forms_for(std::string_view symbol) const;
};

}  // namespace ls::arch
