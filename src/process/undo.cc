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
#include <optional>

#include "arch/target.h"
#include "base/demangle.h"
#include "process/apply.h"
#include "process/frames.h"
#include "process/guardian.h"
#include "process/hooks.h"
#include "process/maps.h"
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

// Restores the original bytes of entry `id` under a safety stop, then retires it; all of
// it in a guardian. `partial`: only the sites that hold their jump (a half-written
// entry); otherwise every site must.
Status undo_one(Context& ctx, Target& target, const std::string& id, const StopPolicy& policy, bool partial,
                double& pause_us) {
  LS_TRY(target.refresh_maps());
  const Memory& mem = target.memory();
  const Ledger& ledger = target.ledger();
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
  LS_TRY(load_guarded_code(mem, guarded));
  // As apply does: the pages the restore writes become this process's own copies now
  // (a fork since the apply shares them again), not inside the pause.
  LS_TRY(privatize_sites(mem, e.trampolines));

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
        if (!mem.read(s.at, now).ok() || now == s.to) return true;
        s.from = now;
        return false;
      });
    }
    LS_TRY(privatize_sites(mem, e.trampolines));   // again, from this process (trampoline.h)
    // No one else writes the sites (the lock), so the edits read before the stop hold in it.
    auto edits_now = [&]() -> Result<std::vector<SiteEdit>> { return restore; };
    // The update's undo hooks (hooks.h), not when putting right what a killed command
    // left: pre_undo now, undo inside the stop, post_undo once resumed, before the code
    // they are part of is unmapped.
    const std::vector<HookCall> hooks = partial ? std::vector<HookCall>() : hooks_of(e);
    const std::chrono::milliseconds hook_limit(policy.hook_timeout_ms);
    std::vector<HookRun> ran;
    LS_TRY(run_hooks(target.pid(), hooks, update::HookKind::PreUndo, hook_limit, ran));
    auto done = when_safe(ctx, target, guarded, edits_now, policy, orphaned, [&](ThreadGroupStop& stop) {
      return run_hooks_stopped(stop, hooks, update::HookKind::Undo, hook_limit, ran);
    });
    if (!done) return done.status();
    kill_point(tool, "undo:restored");
    if (Status post = run_hooks(target.pid(), hooks, update::HookKind::PostUndo, hook_limit, ran); !post.ok())
      ctx.warn(fmt::format("undone, but {}", post.message()));
    for (const auto& r : ran) ctx.note(fmt::format("ran {} in {:.0f} us: {}", r.label, r.us, r.value));
    Borrow unmapped;
    LS_TRY(retire(target, e.id, [&](const char* step) { kill_point(tool, std::string("undo:") + step); }, &unmapped));
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

// The ledger as it is now (a guardian changed it in its own copy of the target).
Status reread_ledger(Target& target) {
  LS_TRY(target.refresh_maps());
  return target.read_ledger();
}

// View's and undo's failures before any update is named: the message only (undo's
// --json output with its partial progress is written where an undo fails).
Exit failed(const Context& ctx, const char* cmd, pid_t pid, const Status& s) {
  return ctx.failed(fmt::format("{} process {}", cmd, pid), s, {}, {});
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

Status retire(Target& target, const std::string& id, const std::function<void(const char*)>& at, Borrow* unmapped) {
  Ledger& ledger = target.ledger();
  LedgerEntry* e = ledger.entry(id);
  if (!e) return {};
  if (e->state != EntryState::Removing) {
    e->state = EntryState::Removing;
    LS_TRY(ledger.commit());
  }
  at("marked");
  // Only what is still mapped as ours: a region never mapped (the apply died first) or
  // already unmapped (the removal died after) may hold something else by now.
  LS_TRY(target.refresh_maps());
  std::vector<Region> mapped;
  for (const auto& r : ledger.entry(id)->regions)
    if (mapped_as_recorded(target.maps(), r)) mapped.push_back(r);
  // The target's unwinder lets go of the tables before their memory goes (frames.h).
  if (!mapped.empty() && !ledger.entry(id)->unwind.empty()) {
    if (target.modules().empty()) LS_TRY(target.read_modules());
    LS_TRY(deregister_unwind(target, ledger.entry(id)->unwind));
  }
  auto borrow = unmap_regions(target, mapped);
  if (!borrow) return borrow.status();
  if (unmapped) *unmapped = *borrow;
  at("unmapped");
  auto& entries = ledger.entries();
  entries.erase(std::remove_if(entries.begin(), entries.end(), [&](const LedgerEntry& x) { return x.id == id; }),
                entries.end());
  return ledger.commit();
}

namespace {

// The repair of one entry (undo.h), said in `found` when there was one to make.
Status repair_entry(Context& ctx, Target& target, const std::string& id, const StopPolicy& policy,
                    std::vector<std::string>& found) {
  const LedgerEntry* e = target.ledger().entry(id);
  if (!e) return {};
  std::string name = id.substr(0, 8);
  if (e->state == EntryState::Removing) {
    LS_TRY(retire(target, id));
    found.push_back(fmt::format("update {} was being removed by a killed command: finished removing it", name));
    return {};
  }
  auto live = jumps_in_place(target.memory(), *e);
  if (!live) return live.status();
  bool pending = e->state == EntryState::Pending;
  if (*live == JumpsInPlace::All && pending) {
    target.ledger().entry(id)->state = EntryState::Applied;
    LS_TRY(target.ledger().commit());
    found.push_back(fmt::format("update {} was pending, but all its jumps are in place (its apply was killed before "
                                "confirming): recorded it as applied", name));
  } else if (*live == JumpsInPlace::None && (pending || !e->trampolines.empty())) {
    LS_TRY(retire(target, id));
    found.push_back(pending ? fmt::format("update {} was pending, left by a killed apply, and none of its jumps was "
                                          "written: removed it and its code", name)
                            : fmt::format("update {} was recorded as applied, but none of its jumps is in place (its "
                                          "undo was killed after restoring the code): removed it and its code", name));
  } else if (*live == JumpsInPlace::Some) {
    double pause = 0;
    LS_TRY(undo_one(ctx, target, id, policy, true, pause));
    LS_TRY(reread_ledger(target));
    found.push_back(fmt::format("update {} had only some of its jumps in place (a command was killed while writing "
                                "them): restored the original code and removed it", name));
  }
  return {};
}

}  // namespace

Status repair_leftovers(Context& ctx, Target& target, const StopPolicy& policy, std::vector<std::string>& found) {
  for (const auto& note : target.ledger().notes()) found.push_back(note);
  std::vector<std::string> ids;
  for (const auto& e : target.ledger().entries()) ids.insert(ids.begin(), e.id);   // newest first
  for (const auto& id : ids) LS_TRY(repair_entry(ctx, target, id, policy, found));
  return {};
}

namespace {

// The ids to undo, newest first: every one (`all`), the one whose id starts with `id`, or
// the newest (`id` empty). nullopt when none matches.
std::optional<std::vector<std::string>> chosen(const Ledger& ledger, const std::string& id, bool all) {
  std::vector<std::string> ids;
  if (all) {
    for (auto it = ledger.entries().rbegin(); it != ledger.entries().rend(); ++it) ids.push_back(it->id);
    return ids;
  }
  const LedgerEntry* e = id.empty() ? (ledger.entries().empty() ? nullptr : &ledger.entries().back()) : ledger.find(id);
  if (!e) return std::nullopt;
  ids.push_back(e->id);
  return ids;
}

}  // namespace

Exit undo_updates(Context& ctx, Target& target, const std::string& id, bool all, const StopPolicy& policy) {
  const pid_t pid = target.pid();
  // Under the lock (a killed command's guardian finishing first): the ledger, repaired.
  if (Status s = target.lock(Access::Change, kLockWaitS); !s.ok()) return failed(ctx, "undo:", pid, s);
  if (Status s = reread_ledger(target); !s.ok()) return failed(ctx, "undo:", pid, s);
  std::vector<std::string> repaired;
  Status rs = repair_leftovers(ctx, target, policy, repaired);
  for (const auto& r : repaired) ctx.report(fmt::format("undo: process {}: {}", pid, r));
  if (!rs.ok()) return failed(ctx, "undo:", pid, rs);

  auto ids = chosen(target.ledger(), id, all);
  if (!ids && !repaired.empty()) ids.emplace();   // what was asked for was a leftover, repaired above
  if (!ids) {
    ctx.report(fmt::format("undo: no applied update {} in process {} (see livesplice view)",
                           id.empty() ? "at all" : "matches '" + id + "'", pid));
    return Exit::ToolError;
  }
  nlohmann::json done = nlohmann::json::array();
  for (const auto& one : *ids) {
    double pause = 0;
    Status s = undo_one(ctx, target, one, policy, false, pause);
    if (s.ok()) s = reread_ledger(target);
    if (!s.ok()) {
      // Not Context::failed's JSON: what was undone before the failure is part of the answer.
      Exit code = ctx.failed(fmt::format("undo {} in process {}", one.substr(0, 8), pid), s, {}, {});
      if (ctx.json)
        fmt::print("{}\n", nlohmann::json{{"undone", done}, {"repaired", repaired}, {"error", s.message()}}.dump(
                                2, ' ', false, nlohmann::json::error_handler_t::replace));
      return code;
    }
    done.push_back({{"id", one}, {"pause_us", pause}});
    if (!ctx.json) fmt::print("undone {} in process {}: pause {:.0f} us\n", one.substr(0, 8), pid, pause);
  }
  if (ctx.json) fmt::print("{}\n", nlohmann::json{{"undone", done}, {"repaired", repaired}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  return Exit::Ok;
}

Exit run_undo(Context& ctx, const UndoOptions& opt) {
  auto target = Target::open(opt.pid);
  if (!target) return failed(ctx, "undo:", opt.pid, target.status());
  return undo_updates(ctx, *target, opt.id, opt.all, opt.stop_policy());
}

namespace {

// What each entry's sites hold ("all", "none", "some" of its jumps in place), so that a
// leftover of a killed command is shown as what it is.
Result<std::vector<std::string>> jumps_shown(const Target& target) {
  std::vector<std::string> live;
  for (const auto& e : target.ledger().entries()) {
    auto in_place = jumps_in_place(target.memory(), e);
    if (!in_place) return in_place.status();
    live.push_back(*in_place == JumpsInPlace::All ? "all" : *in_place == JumpsInPlace::None ? "none" : "some");
  }
  return live;
}

}  // namespace

Exit view_updates(Context& ctx, Target& target, bool with_patch) {
  const pid_t pid = target.pid();
  // Shared: several views at once, none while a command changes the process (its
  // pending entry would look like a leftover). View changes nothing: the next apply or
  // undo repairs a leftover.
  if (Status s = target.lock(Access::Look, kLockWaitS); !s.ok()) return failed(ctx, "view:", pid, s);
  if (Status s = reread_ledger(target); !s.ok()) return failed(ctx, "view:", pid, s);
  const Ledger& ledger = target.ledger();
  auto live = jumps_shown(target);
  if (!live) return failed(ctx, "view:", pid, live.status());
  nlohmann::json updates = ledger.to_json(with_patch);
  for (size_t i = 0; i < live->size(); ++i) updates[i]["jumps_in_place"] = (*live)[i];
  if (ctx.json) {
    fmt::print("{}\n", nlohmann::json{{"pid", pid}, {"updates", updates}, {"notes", ledger.notes()}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return Exit::Ok;
  }
  for (const auto& n : ledger.notes()) fmt::print("process {}: note: {}\n", pid, n);
  if (ledger.entries().empty()) {
    fmt::print("process {}: no updates applied\n", pid);
    return Exit::Ok;
  }
  fmt::print("process {}: {} update(s) recorded, oldest first\n", pid, ledger.entries().size());
  for (size_t i = 0; i < ledger.entries().size(); ++i) {
    const LedgerEntry& e = ledger.entries()[i];
    std::string state;
    if (e.state != EntryState::Applied || (*live)[i] != "all")
      state = fmt::format("  ({}, {} of its jumps in place: left by a killed command; the next apply or undo "
                          "repairs it)", to_string(e.state), (*live)[i]);
    fmt::print("{}  {}  {}{}  pause {:.0f} us\n", e.id.substr(0, 8), printable(e.applied_at), printable(e.patch_name),
               state, e.pause_us);
    for (const auto& f : e.functions) fmt::print("    replaced {}\n", printable(with_demangled(f)));
    for (const auto& f : e.new_functions) fmt::print("    added    {}\n", printable(with_demangled(f)));
    if (with_patch) fmt::print("{}\n", printable(e.patch_text, true));
  }
  return Exit::Ok;
}

Exit run_view(Context& ctx, pid_t pid, bool with_patch) {
  auto target = Target::open(pid);
  if (!target) return failed(ctx, "view:", pid, target.status());
  return view_updates(ctx, *target, with_patch);
}

}  // namespace ls::proc
