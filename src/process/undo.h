// Taking updates out of a process, and putting right what killed commands left.
//
// A command can die anywhere (SIGKILL, the OOM killer), and so can its guardian. Each
// ledger entry's state and the bytes at its sites together say what happened; every
// command that changes a process first looks (under the per-process lock, so nothing
// it finds is still under way) and repairs:
//   pending, no jump written        → a killed apply: its code is unmapped, entry dropped
//   pending, every jump written     → a killed apply's confirmation: recorded as applied
//   applied, no jump left           → a killed undo: its code is unmapped, entry dropped
//   some jumps written, some not    → restored to the original code (a safety stop), dropped
//     (a site cut short while being written — its int3, then the rest of the jump or of
//     the original bytes, trampoline.h — counts as written)
//   removing                        → a killed removal: finished
// A site holding anything else is not ours to touch: refused.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "base/diag.h"
#include "base/result.h"
#include "process/ledger.h"
#include "process/ptrace.h"
#include "process/regions.h"
#include "process/safety.h"
#include "process/target.h"

namespace ls::proc {

// How many of an entry's jumps are in place (a site cut short counts as Some).
enum class JumpsInPlace { All, None, Some };
// Unsafe error when a site holds neither its jump nor its original bytes.
Result<JumpsInPlace> jumps_in_place(const Memory& mem, const LedgerEntry& e);

// Drops an entry of the target's ledger whose jumps are not in place (any more): marks
// it removing, unmaps those of its regions still mapped as ours (the maps read again),
// drops it; each step committed, so that a death between them is finished by the next
// command. `at(step)` is called after "marked" and "unmapped" (kill points);
// `unmapped`, when given, gets what the thread borrowed to unmap cost the target.
Status retire(Target& target, const std::string& id, const std::function<void(const char*)>& at = [](const char*) {},
              Borrow* unmapped = nullptr);

// The repairs above, on the target's ledger (read again where a guardian changed it),
// each described in one line in `found` (what was found, what was done). The target is
// locked for a change (Access::Change).
Status repair_leftovers(Context& ctx, Target& target, const StopPolicy& policy, std::vector<std::string>& found);

}  // namespace ls::proc
