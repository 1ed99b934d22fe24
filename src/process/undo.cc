// `undo` and `view` for processes, and the repair of what killed commands left (undo.h).
//
// Undo is apply in reverse: the safety check guards the new code being removed (no
// thread inside it or returning into it) and the jump bytes being overwritten; the
// original bytes go back only where our jump is still in place; then the regions are
// unmapped. Updates stack, so only the newest update of a function can be undone; --all
// undoes newest first. Everything after the first byte is written — restoring, marking
// the entry, unmapping, dropping it — runs in the guardian child, so that the tool's
// death cannot leave a record of code that no longer runs.
#include "process/undo.h"

#include <unistd.h>

#include <algorithm>

#include "arch/target.h"
#include "process/apply.h"
#include "process/guardian.h"
#include "process/maps.h"
#include "process/regions.h"
#include "process/safety.h"
#include "process/trampoline.h"

namespace ls::proc {

namespace {

constexpr int kLockWaitS = 60;   // a killed command's guardian finishing its retries

// An entry that a later entry stacks on (a later trampoline sits inside its regions).
const LedgerEntry* stacked_on(const Ledger& ledger, size_t idx) {
  const LedgerEntry& e = ledger.entries()[idx];
  for (size_t k = idx + 1; k < ledger.entries().size(); ++k)
    for (const auto& t : ledger.entries()[k].trampolines)
      for (const auto& r : e.regions)
        if (r.range.contains(t.site)) return &ledger.entries()[k];
  return nullptr;
}

// Restores the original bytes of entry `id` under a safety stop, then retires it; all of
// it in a guardian. `partial`: only the sites that hold their jump (a half-written
// entry); otherwise every site must.
Status undo_one(Context& ctx, pid_t pid, Ledger& ledger, const std::string& id, int retries, int retry_delay_ms,
                int hot_wait_ms, bool partial, double& pause_us) {
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

  pid_t tool = getpid();
  kill_point(tool, "undo:checked");
  auto outcome = run_to_completion([&](std::string& payload) -> Status {
    auto orphaned = [&]() -> Status {
      return getppid() == tool ? Status() : error("livesplice was killed during undo; nothing changed");
    };
    std::vector<SiteEdit> restore = removals(e.trampolines);
    if (partial) {
      // A command died around its stop: whatever landed (a jump, or a site cut short
      // while being written) goes back to the original; a site that holds it already is
      // left alone. No one else writes the sites (the lock), so what they hold now they
      // hold in the pause.
      std::erase_if(restore, [&](SiteEdit& s) {
        std::vector<uint8_t> now(s.from.size());
        if (!mem->read(s.at, now).ok() || now == s.to) return true;
        s.from = now;
        return false;
      });
    }
    LS_TRY(privatize_sites(*mem, e.trampolines));   // again, from this process (trampoline.h)
    // No one else writes the sites (the lock), so the edits read before the stop hold in it.
    auto edits_now = [&]() -> Result<std::vector<SiteEdit>> { return restore; };
    auto done = when_safe(ctx, pid, *maps, guarded, edits_now, retries, retry_delay_ms, hot_wait_ms, orphaned);
    if (!done) return done.status();
    kill_point(tool, "undo:restored");
    Borrow unmapped;
    LS_TRY(retire(pid, ledger, e.id, [&](const char* step) { kill_point(tool, std::string("undo:") + step); },
                  &unmapped));
    kill_point(tool, "undo:committed");
    // The pause: the longest time any thread was kept from running, the stops of the
    // check and restore or the thread borrowed to unmap the regions.
    payload = fmt::format("{}", std::max(done->longest_us, unmapped.us));
    return {};
  }, Paging::Locked);
  if (!outcome) return outcome.status();
  pause_us = std::stod(*outcome);
  return {};
}

// The ledger as it is now (a guardian changed it in its own copy of memory).
Result<Ledger> reread(pid_t pid) {
  auto maps = read_maps(pid);
  if (!maps) return maps.status();
  return Ledger::read(pid, *maps);
}

Exit failed(const char* cmd, pid_t pid, const Status& s) {
  fmt::print(stderr, "livesplice: {} process {}: {}\n", cmd, pid, printable(s.message(), true));
  return s.code() == Exit::Ok ? Exit::ToolError : s.code();
}

}  // namespace

namespace {

// A site cut short while being written (SiteWriter, trampoline.h): its int3, then the
// rest of either the jump or the original bytes.
bool torn(const std::vector<uint8_t>& now, const Trampoline& t) {
  auto rest_of = [&](const std::vector<uint8_t>& b) {
    return std::equal(now.begin() + 1, now.end(), b.begin() + 1, b.end());
  };
  return !now.empty() && now[0] == arch::host().trap && (rest_of(t.jump) || rest_of(t.original));
}

}  // namespace

Result<JumpsInPlace> jumps_in_place(const Memory& mem, const LedgerEntry& e) {
  size_t jumps = 0, originals = 0, halfway = 0;
  for (const auto& t : e.trampolines) {
    std::vector<uint8_t> now(t.jump.size());
    LS_TRY(mem.read(t.site, now));
    if (now == t.jump) ++jumps;
    else if (now == t.original) ++originals;
    else if (torn(now, t)) ++halfway;
    else
      return Status::error(fmt::format("update {}: {} at {} holds neither livesplice's jump nor the original bytes "
                                       "(changed by something else); refusing, nothing written",
                                       e.id.substr(0, 8), printable(t.function), t.site), Exit::Unsafe);
  }
  if (originals == 0 && halfway == 0 && jumps > 0) return JumpsInPlace::All;
  return jumps == 0 && halfway == 0 ? JumpsInPlace::None : JumpsInPlace::Some;
}

Status retire(pid_t pid, Ledger& ledger, const std::string& id, const std::function<void(const char*)>& at,
              Borrow* unmapped) {
  LedgerEntry* e = ledger.entry(id);
  if (!e) return {};
  if (e->state != EntryState::Removing) {
    e->state = EntryState::Removing;
    LS_TRY(ledger.commit(pid));
  }
  at("marked");
  // Only what is still mapped as ours: a region never mapped (the apply died first) or
  // already unmapped (the removal died after) may hold something else by now.
  auto maps = read_maps(pid);
  if (!maps) return maps.status();
  std::vector<Region> mapped;
  for (const auto& r : ledger.entry(id)->regions)
    if (mapped_as_recorded(*maps, r)) mapped.push_back(r);
  auto borrow = unmap_regions(pid, mapped);
  if (!borrow) return borrow.status();
  if (unmapped) *unmapped = *borrow;
  at("unmapped");
  auto& entries = ledger.entries();
  entries.erase(std::remove_if(entries.begin(), entries.end(), [&](const LedgerEntry& x) { return x.id == id; }),
                entries.end());
  return ledger.commit(pid);
}

Status repair_leftovers(Context& ctx, pid_t pid, Ledger& ledger, int retries, int retry_delay_ms, int hot_wait_ms,
                        std::vector<std::string>& found) {
  for (const auto& note : ledger.notes()) found.push_back(note);
  auto mem = Memory::open(pid);
  if (!mem) return mem.status();
  std::vector<std::string> ids;
  for (const auto& e : ledger.entries()) ids.insert(ids.begin(), e.id);   // newest first
  for (const auto& id : ids) {
    const LedgerEntry* e = ledger.entry(id);
    if (!e) continue;
    std::string name = id.substr(0, 8);
    if (e->state == EntryState::Removing) {
      LS_TRY(retire(pid, ledger, id));
      found.push_back(fmt::format("update {} was being removed by a killed command: finished removing it", name));
      continue;
    }
    auto live = jumps_in_place(*mem, *e);
    if (!live) return live.status();
    bool pending = e->state == EntryState::Pending;
    if (*live == JumpsInPlace::All && pending) {
      ledger.entry(id)->state = EntryState::Applied;
      LS_TRY(ledger.commit(pid));
      found.push_back(fmt::format("update {} was pending, but all its jumps are in place (its apply was killed before "
                                  "confirming): recorded it as applied", name));
    } else if (*live == JumpsInPlace::None && (pending || !e->trampolines.empty())) {
      LS_TRY(retire(pid, ledger, id));
      found.push_back(pending ? fmt::format("update {} was pending, left by a killed apply, and none of its jumps was "
                                            "written: removed it and its code", name)
                              : fmt::format("update {} was recorded as applied, but none of its jumps is in place (its "
                                            "undo was killed after restoring the code): removed it and its code", name));
    } else if (*live == JumpsInPlace::Some) {
      double pause = 0;
      LS_TRY(undo_one(ctx, pid, ledger, id, retries, retry_delay_ms, hot_wait_ms, true, pause));
      auto now = reread(pid);
      if (!now) return now.status();
      ledger = std::move(*now);
      found.push_back(fmt::format("update {} had only some of its jumps in place (a command was killed while writing "
                                  "them): restored the original code and removed it", name));
    }
  }
  return {};
}

Exit run_undo(Context& ctx, const UndoOptions& opt) {
  // Whether we may look at the process at all (a permission problem says so) first.
  if (auto probe = read_maps(opt.pid); !probe) return failed("undo:", opt.pid, probe.status());
  auto key = process_key(opt.pid);
  if (!key) return failed("undo:", opt.pid, key.status());
  auto lock = LedgerLock::take(*key, true, kLockWaitS);
  if (!lock) return failed("undo:", opt.pid, lock.status());
  auto ledger = reread(opt.pid);
  if (!ledger) return failed("undo:", opt.pid, ledger.status());
  std::vector<std::string> repaired;
  Status rs = repair_leftovers(ctx, opt.pid, *ledger, opt.retries, opt.retry_delay_ms, opt.hot_wait_ms, repaired);
  for (const auto& r : repaired) fmt::print(stderr, "livesplice: undo: process {}: {}\n", opt.pid, r);
  if (!rs.ok()) return failed("undo:", opt.pid, rs);

  std::vector<std::string> ids;
  if (opt.all) {
    for (auto it = ledger->entries().rbegin(); it != ledger->entries().rend(); ++it) ids.push_back(it->id);
  } else {
    const LedgerEntry* e = opt.id.empty() ? (ledger->entries().empty() ? nullptr : &ledger->entries().back())
                                          : ledger->find(opt.id);
    if (!e && !repaired.empty()) {
      // What was asked for was a killed command's leftover, removed above.
      if (ctx.json) fmt::print("{}\n", nlohmann::json{{"undone", nlohmann::json::array()}, {"repaired", repaired}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
      return Exit::Ok;
    }
    if (!e) {
      fmt::print(stderr, "livesplice: undo: no applied update {} in process {} (see livesplice view)\n",
                 opt.id.empty() ? "at all" : "matches '" + printable(opt.id) + "'", opt.pid);
      return Exit::ToolError;
    }
    ids.push_back(e->id);
  }
  nlohmann::json done = nlohmann::json::array();
  for (const auto& id : ids) {
    double pause = 0;
    Status s = undo_one(ctx, opt.pid, *ledger, id, opt.retries, opt.retry_delay_ms, opt.hot_wait_ms, false, pause);
    if (s.ok()) {
      auto now = reread(opt.pid);
      if (!now) s = now.status();
      else *ledger = std::move(*now);
    }
    if (!s.ok()) {
      fmt::print(stderr, "livesplice: undo {} in process {}: {}\n", id.substr(0, 8), opt.pid, printable(s.message(), true));
      if (ctx.json)
        fmt::print("{}\n", nlohmann::json{{"undone", done}, {"repaired", repaired}, {"error", s.message()}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
      return s.code() == Exit::Ok ? Exit::ToolError : s.code();
    }
    done.push_back({{"id", id}, {"pause_us", pause}});
    if (!ctx.json) fmt::print("undone {} in process {}: pause {:.0f} us\n", id.substr(0, 8), opt.pid, pause);
  }
  if (ctx.json) fmt::print("{}\n", nlohmann::json{{"undone", done}, {"repaired", repaired}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  return Exit::Ok;
}

Exit run_view(Context& ctx, pid_t pid, bool with_patch) {
  // Shared: several views at once, none while a command changes the process (its
  // pending entry would look like a leftover).
  if (auto probe = read_maps(pid); !probe) return failed("view:", pid, probe.status());
  auto key = process_key(pid);
  if (!key) return failed("view:", pid, key.status());
  auto lock = LedgerLock::take(*key, false, kLockWaitS);
  if (!lock) return failed("view:", pid, lock.status());
  auto ledger = reread(pid);
  if (!ledger) return failed("view:", pid, ledger.status());
  auto mem = Memory::open(pid);
  if (!mem) return failed("view:", pid, mem.status());
  // What each entry's sites hold, so that a leftover of a killed command is shown as
  // what it is (view changes nothing; the next apply or undo repairs it).
  nlohmann::json updates = ledger->to_json(with_patch);
  std::vector<std::string> live;
  for (const auto& e : ledger->entries()) {
    auto in_place = jumps_in_place(*mem, e);
    if (!in_place) return failed("view:", pid, in_place.status());
    live.push_back(*in_place == JumpsInPlace::All ? "all" : *in_place == JumpsInPlace::None ? "none" : "some");
    updates[live.size() - 1]["jumps_in_place"] = live.back();
  }
  if (ctx.json) {
    fmt::print("{}\n", nlohmann::json{{"pid", pid}, {"updates", updates}, {"notes", ledger->notes()}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return Exit::Ok;
  }
  for (const auto& n : ledger->notes()) fmt::print("process {}: note: {}\n", pid, n);
  if (ledger->entries().empty()) {
    fmt::print("process {}: no updates applied\n", pid);
    return Exit::Ok;
  }
  fmt::print("process {}: {} update(s) recorded, oldest first\n", pid, ledger->entries().size());
  for (size_t i = 0; i < ledger->entries().size(); ++i) {
    const LedgerEntry& e = ledger->entries()[i];
    std::string state;
    if (e.state != EntryState::Applied || live[i] != "all")
      state = fmt::format("  ({}, {} of its jumps in place: left by a killed command; the next apply or undo "
                          "repairs it)", to_string(e.state), live[i]);
    fmt::print("{}  {}  {}{}  pause {:.0f} us\n", e.id.substr(0, 8), printable(e.applied_at), printable(e.patch_name),
               state, e.pause_us);
    for (const auto& f : e.functions) fmt::print("    replaced {}\n", printable(f));
    for (const auto& f : e.new_functions) fmt::print("    added    {}\n", printable(f));
    if (with_patch) fmt::print("{}\n", printable(e.patch_text, true));
  }
  return Exit::Ok;
}

}  // namespace ls::proc
