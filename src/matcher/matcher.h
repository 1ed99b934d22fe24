// Run-pre matching: proving that the code running in a target was built from the source
// an update was made from, and learning the run values of everything that code refers to.
//
// For each function the update replaces, its pre code (section `.livesplice.pre.*` of
// the update, relocations against undefined *run symbols*) is compared with the bytes at
// a candidate address in the target. Bytes outside relocation sites must be equal; each
// site's bytes in run reveal a value of its symbol (its address, GOT slot, TLS offset…;
// see ls::View), and every site naming the same (symbol, view) must agree; a site naming
// a literal must find the same string or constant there. Nothing about
// processes or kernels is known here: the target supplies a CodeSource, candidates from
// its symbol tables, and ranges to search when those are missing (stripped binaries).
//
// Target independent; x86-64 is the only architecture so far (src/arch/x86_64_relax.h
// lists the linker rewrites of instructions that are recognised: nothing else is
// tolerated).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/addr.h"
#include "core/diag.h"
#include "core/result.h"
#include "core/view.h"
#include "elf/object.h"
#include "update/contents.h"

namespace ls::match {

using ls::View;

// Reads a target's memory. read() fills all of `out` or fails (a partial read is a
// failure); it is called before the target is stopped, so it must not need it stopped.
class CodeSource {
 public:
  virtual ~CodeSource() = default;
  virtual Status read(TargetAddr at, std::span<uint8_t> out) const = 0;
};

// One function to match.
struct Request {
  std::string label;                    // for messages, e.g. "server.o:handle_get"
  uint32_t pre_section = 0;             // section of the update object holding its pre code
  std::vector<TargetAddr> candidates;   // from the target's symbol tables; may be empty
  std::vector<TargetRange> search;      // scanned by content when no candidate matches
};

struct Resolution {
  TargetAddr value;       // for View::TlsOffset, the offset as two's complement
  std::string evidence;   // the first site that revealed it: "server.o:handle_get+0x1c"
};

struct Match {
  std::vector<TargetAddr> function_at;   // per request, in request order
  // Per request, its length in run: pre's, unless the running build encoded jumps or
  // padding otherwise (longer or shorter then). What a stack check must guard.
  std::vector<uint64_t> function_size;
  // What pre code revealed, keyed by update symbol index (a run symbol) and view. A
  // replaced function's own run symbols (the names other code calls it by) also get
  // its matched address as View::Address, unless a call site already revealed one.
  // Not included: sites referring to a literal (a string or a constant of a merged
  // pool): the linker merges and reorders pools, so a literal has no single address.
  // Literals are compared by content instead (see match()).
  std::map<std::pair<uint32_t, View>, Resolution> symbols;
};

// Rewrites a target makes of its own code after loading it, supplied by the target as
// data (the kernel's: src/kernel/rewrites.h). Each applies to an instruction that ends in
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
// update carries say (the kernel's alternatives and jump labels: src/kernel/rewrites.h
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

// Matches every request, or fails naming each one that did not match and why: the
// closest candidate's first difference with both instructions disassembled, a literal
// that differs (the site, expected and found string or constant bytes), an ambiguity
// with the addresses, a disagreement between two sites with both, or a site that
// cannot be interpreted. A site referring to a pre literal pool the update carries
// (`.livesplice.pre.*`, SHF_MERGE) matches only if the literal at the run address it
// resolves to has the same contents: a C string up to its terminator, a constant's
// whole entry. Fails with Exit::Unsafe when the run code differs (the
// update is not for this target), Exit::ToolError when reading or interpreting fails.
//
// Order: candidates first; addresses of other requests' functions revealed by call
// sites of matched ones become candidates too (repeated until nothing new matches);
// then content search of `search` for requests still unmatched. Exactly one address
// may match per request; a candidate whose resolutions contradict ones already
// established (by matched functions) does not match — that is how two identical
// static functions in different files are told apart.
//
// `rewrites`: the target's own run-time rewrites that are accepted at relocation sites
// and at the rewritten sites it lists (none by default: every byte outside sites as pre
// has it, every site as a linker leaves it). A malformed form is a tool error.
Result<Match> match(Context& ctx, const CodeSource& run, const update::Contents& update,
                    const std::vector<Request>& requests, const Rewrites& rewrites = {});

}  // namespace ls::match
