// libFuzzer target for the ledger reader (process/ledger.h): livesplice runs as root and
// reads ledgers; any bytes must either parse into entries that pass check_entry — and
// write back as the same text — or be refused with a Status. A crash, a sanitizer
// report, an exception, or entries that break the reader's promises are findings.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "arch/target.h"
#include "process/ledger.h"

namespace {

[[noreturn]] void broken_promise(const char* what) {
  std::fprintf(stderr, "ledger_fuzzer: parsed ledger breaks the reader's contract: %s\n", what);
  std::abort();
}

// ledger.h: entries are what the tool itself would have written. Check what undo and
// the trampoline writer rely on, independently of check_entry.
void check(const std::vector<ls::proc::LedgerEntry>& entries) {
  for (const auto& e : entries) {
    if (!ls::proc::check_entry(e).ok()) broken_promise("an entry fails check_entry");
    if (e.regions.empty()) broken_promise("an entry without regions");
    for (const auto& t : e.trampolines) {
      const ls::arch::Target& arch = ls::arch::host();   // the near jump's length, or the far one's
      if (t.jump.size() != arch.jump(t.site, t.site).size() && t.jump.size() != arch.max_jump_size)
        broken_promise("a jump of another length");
      if (t.original.size() != t.jump.size()) broken_promise("original bytes of another length than the jump");
    }
    (void)ls::printable(e.patch_text, true);
    for (const auto& f : e.functions) (void)ls::printable(f);
  }
  // What parses writes back as text that parses to the same.
  std::string again = ls::proc::serialize_ledger(entries);
  auto reparsed = ls::proc::parse_ledger(again);
  if (!reparsed.ok()) broken_promise("its own serialisation does not parse");
  if (ls::proc::serialize_ledger(*reparsed) != again) broken_promise("serialisation is not stable");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto entries = ls::proc::parse_ledger(std::string_view(reinterpret_cast<const char*>(data), size));
  if (entries.ok()) check(*entries);
  return 0;
}
