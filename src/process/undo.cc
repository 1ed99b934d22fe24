// `undo` and `view` for processes: both work from the ledger inside the process alone.
//
// Undo is apply in reverse: the safety check guards the new code being removed (no
// thread inside it or returning into it) and the jump bytes being overwritten; the
// original bytes go back only where our jump is still in place; then the regions are
// unmapped. Updates stack, so only the newest update of a function can be undone; --all
// undoes newest first.
#include <algorithm>
#include <chrono>
#include <thread>

#include <unistd.h>

#include "process/apply.h"
#include "process/guardian.h"
#include "process/ledger.h"
#include "process/maps.h"
#include "process/ptrace.h"
#include "process/regions.h"
#include "process/safety.h"
#include "process/trampoline.h"

namespace ls::proc {

namespace {

// An entry that a later entry stacks on (a later trampoline sits inside its regions).
const LedgerEntry* stacked_on(const Ledger& ledger, size_t idx) {
  const LedgerEntry& e = ledger.entries()[idx];
  for (size_t k = idx + 1; k < ledger.entries().size(); ++k)
    for (const auto& t : ledger.entries()[k].trampolines)
      for (const auto& r : e.regions)
        if (r.range.contains(t.site)) return &ledger.entries()[k];
  return nullptr;
}

Status undo_one(Context& ctx, pid_t pid, Ledger& ledger, const std::string& id, const UndoOptions& opt, double& pause_us) {
  auto maps = read_maps(pid);
  if (!maps) return maps.status();
  auto mem = Memory::open(pid);
  if (!mem) return mem.status();
  size_t idx = 0;
  while (idx < ledger.entries().size() && ledger.entries()[idx].id != id) ++idx;
  if (idx == ledger.entries().size()) return error("update {} is not applied", id.substr(0, 8));
  const LedgerEntry e = ledger.entries()[idx];
  if (const LedgerEntry* later = stacked_on(ledger, idx))
    return error("update {} is stacked on by {}: undo that one first (or use --all)", e.id.substr(0, 8),
                 later->id.substr(0, 8));

  std::vector<Guarded> guarded;
  for (const auto& r : e.regions) guarded.push_back({r.range, {}, "new code of update " + e.id.substr(0, 8), {}});
  for (const auto& t : e.trampolines)
    guarded.push_back({{t.site, t.site + static_cast<int64_t>(t.jump.size())},
                       {t.site, t.site + static_cast<int64_t>(t.jump.size())}, t.function + " (its trampoline)", {}});
  LS_TRY(load_guarded_code(*mem, guarded));
  // As apply does: the pages the restore writes become this process's own copies now
  // (a fork since the apply shares them again), not inside the pause.
  LS_TRY(privatize_sites(*mem, e.trampolines));

  // The stop/check/restore loop runs in a guardian child: our death cannot cut it in half.
  pid_t parent = getpid();
  auto outcome = run_to_completion([&](std::string& payload) -> Status {
    auto orphaned = [&]() -> Status {
      return getppid() == parent ? Status() : error("livesplice was killed during undo; nothing changed");
    };
    auto restore = [&]() -> Result<std::vector<SiteEdit>> {
      std::vector<SiteEdit> edits = removals(e.trampolines);
      if (!e.pending) return edits;
      // The apply died around its stop (its guardian may have finished the stop just
      // now, hence read with every thread seized): whatever landed (a jump, or a site cut
      // short while being written) goes back to the original.
      std::erase_if(edits, [&](SiteEdit& s) {
        std::vector<uint8_t> now(s.from.size());
        if (!mem->read(s.at, now).ok() || now == s.to) return true;
        s.from = now;
        return false;
      });
      return edits;
    };
    LS_TRY(privatize_sites(*mem, e.trampolines));   // again, from this process (trampoline.h)
    auto done = when_safe(ctx, pid, *maps, guarded, restore, opt.retries, opt.retry_delay_ms, opt.hot_wait_ms, orphaned);
    if (!done) return done.status();
    payload = fmt::format("{}", done->longest_us);
    return {};
  }, Paging::Locked);
  if (!outcome) return outcome.status();
  pause_us = std::stod(*outcome);
  ledger.entries().erase(ledger.entries().begin() + static_cast<long>(idx));
  LS_TRY(ledger.write(pid));
  // The pause: the longest time any thread was kept from running, the stops of the
  // check and restore or the thread borrowed to unmap the regions.
  if (auto unmapped = unmap_regions(pid, e.regions); !unmapped) ctx.warn(unmapped.status().message());
  else pause_us = std::max(pause_us, unmapped->us);
  return {};
}

}  // namespace

Exit run_undo(Context& ctx, const UndoOptions& opt) {
  auto maps = read_maps(opt.pid);
  if (!maps) {
    fmt::print(stderr, "livesplice: undo: {}\n", maps.status().message());
    return Exit::ToolError;
  }
  auto ledger = Ledger::read(opt.pid, *maps);
  if (!ledger) {
    fmt::print(stderr, "livesplice: undo: {}\n", ledger.status().message());
    return Exit::ToolError;
  }
  std::vector<std::string> ids;
  if (opt.all) {
    for (auto it = ledger->entries().rbegin(); it != ledger->entries().rend(); ++it) ids.push_back(it->id);
  } else {
    const LedgerEntry* e = opt.id.empty() ? (ledger->entries().empty() ? nullptr : &ledger->entries().back())
                                          : ledger->find(opt.id);
    if (!e) {
      fmt::print(stderr, "livesplice: undo: no applied update {} in process {} (see livesplice view)\n",
                 opt.id.empty() ? "at all" : "matches '" + opt.id + "'", opt.pid);
      return Exit::ToolError;
    }
    ids.push_back(e->id);
  }
  nlohmann::json done = nlohmann::json::array();
  for (const auto& id : ids) {
    double pause = 0;
    Status s = undo_one(ctx, opt.pid, *ledger, id, opt, pause);
    if (!s.ok()) {
      fmt::print(stderr, "livesplice: undo {} in process {}: {}\n", id.substr(0, 8), opt.pid, s.message());
      if (ctx.json) fmt::print("{}\n", nlohmann::json{{"undone", done}, {"error", s.message()}}.dump(2));
      return s.code() == Exit::Ok ? Exit::ToolError : s.code();
    }
    done.push_back({{"id", id}, {"pause_us", pause}});
    if (!ctx.json) fmt::print("undone {} in process {}: pause {:.0f} us\n", id.substr(0, 8), opt.pid, pause);
  }
  if (ctx.json) fmt::print("{}\n", nlohmann::json{{"undone", done}}.dump(2));
  return Exit::Ok;
}

Exit run_view(Context& ctx, pid_t pid, bool with_patch) {
  auto maps = read_maps(pid);
  if (!maps) {
    fmt::print(stderr, "livesplice: view: {}\n", maps.status().message());
    return Exit::ToolError;
  }
  auto ledger = Ledger::read(pid, *maps);
  if (!ledger) {
    fmt::print(stderr, "livesplice: view: {}\n", ledger.status().message());
    return Exit::ToolError;
  }
  if (ctx.json) {
    fmt::print("{}\n", nlohmann::json{{"pid", pid}, {"updates", ledger->to_json(with_patch)}}.dump(2));
    return Exit::Ok;
  }
  if (ledger->entries().empty()) {
    fmt::print("process {}: no updates applied\n", pid);
    return Exit::Ok;
  }
  fmt::print("process {}: {} update(s) applied, oldest first\n", pid, ledger->entries().size());
  for (const auto& e : ledger->entries()) {
    fmt::print("{}  {}  {}{}  pause {:.0f} us\n", e.id.substr(0, 8), e.applied_at, e.patch_name,
               e.pending ? "  (PENDING: apply did not finish)" : "", e.pause_us);
    for (const auto& f : e.functions) fmt::print("    replaced {}\n", f);
    for (const auto& f : e.new_functions) fmt::print("    added    {}\n", f);
    if (with_patch) fmt::print("{}\n", e.patch_text);
  }
  return Exit::Ok;
}

}  // namespace ls::proc
