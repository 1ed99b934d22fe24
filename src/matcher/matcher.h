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
// Machine independent: the update's arch::Target reads each site (for x86-64,
// src/arch/x86_64/sites.cc lists the linker rewrites of instructions that are
// recognised: nothing else is tolerated).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "arch/rewrites.h"
#include "base/addr.h"
#include "base/diag.h"
#include "base/result.h"
#include "base/view.h"
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

// Rewrites a target makes of its own code after loading it: described with the machine
// (src/arch/rewrites.h), given here as data.
using arch::RewrittenSite;
using arch::Rewrites;
using arch::RunForm;
using arch::SiteForm;

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
