// `livesplice status [--json]`: the store, and what of it is applied where (Uptrack's
// show). Read-only: it takes the store's lock shared and no process's lock (machine.h).
#include <map>

#include <fmt/ranges.h>

#include "manager/machine.h"
#include "manager/manager.h"
#include "manager/store.h"

namespace ls::manager {

namespace {

using Json = nlohmann::ordered_json;

Json process_json(const RunningProcess& p) {
  return Json{{"pid", p.pid}, {"start_time", p.start_time}, {"command", p.command}};
}

// Why a fitting process does not have the update applied.
std::string not_applied_reason(const Store& store, const Machine& machine, const StoredUpdate& u,
                               const RunningProcess& p) {
  if (const ProcessLedger* l = machine.ledger(p); l && !l->error.empty())
    return "its ledger cannot be read: " + l->error;
  if (const proc::LedgerEntry* e = machine.entry(p, u.id))
    return fmt::format("{} (left by a killed command; the next sync puts it right)", proc::to_string(e->state));
  if (auto per = store.attempts().find(u.id); per != store.attempts().end())
    if (auto a = per->second.find(p.key()); a != per->second.end())
      return fmt::format("failed {} time{}, last at {}: {}", a->second.count, a->second.count == 1 ? "" : "s",
                         a->second.at, a->second.error);
  return "not tried yet (livesplice sync applies it)";
}

Json update_json(const Store& store, const Machine& machine, const StoredUpdate& u) {
  Json applied = Json::array(), missing = Json::array(), targets = Json::array();
  for (const auto& t : u.manifest().targets) targets.push_back(Json{{"name", t.name}, {"build_id", t.build_id}});
  for (const auto& p : machine.processes) {
    if (fits(u.manifest(), p).empty()) continue;
    const proc::LedgerEntry* e = machine.entry(p, u.id);
    if (e && e->state == proc::EntryState::Applied) {
      applied.push_back(process_json(p));
    } else {
      Json j = process_json(p);
      j["reason"] = not_applied_reason(store, machine, u, p);
      missing.push_back(std::move(j));
    }
  }
  return Json{{"id", u.id},          {"label", u.label()},   {"installed", u.installed}, {"path", u.path},
              {"patch", u.manifest().patch_name}, {"kernel", u.manifest().kernel}, {"targets", targets},
              {"applied", applied}, {"not_applied", missing}};
}

// Per binary a stored update is for (name and build-id, as mapped), per process mapping
// it: the effective version, the label of the newest stored update applied there.
Json binaries_json(const Store& store, const Machine& machine) {
  std::map<std::pair<std::string, std::string>, Json> binaries;
  for (const auto& p : machine.processes) {
    std::map<std::pair<std::string, std::string>, std::pair<int, const StoredUpdate*>> newest;
    for (const auto& u : store.updates())
      for (const auto& f : fits(u.manifest(), p)) {
        auto key = std::make_pair(f.binary->name, f.binary->build_id);
        auto& slot = newest.try_emplace(key, -1, nullptr).first->second;
        const ProcessLedger* l = machine.ledger(p);
        for (int i = 0; l && i < static_cast<int>(l->entries.size()); ++i)
          if (l->entries[i].id == u.id && l->entries[i].state == proc::EntryState::Applied && i > slot.first)
            slot = {i, &u};
      }
    for (const auto& [key, slot] : newest) {
      Json j = process_json(p);
      j["effective_version"] = slot.second ? Json(slot.second->label()) : Json(nullptr);
      j["update"] = slot.second ? Json(slot.second->id) : Json(nullptr);
      Json& b = binaries[key];
      if (b.is_null()) b = Json{{"name", key.first}, {"build_id", key.second}, {"processes", Json::array()}};
      b["processes"].push_back(std::move(j));
    }
  }
  Json out = Json::array();
  for (auto& [key, b] : binaries) out.push_back(std::move(b));
  return out;
}

// Updates this store applied that it no longer holds (sync undoes them).
Json unstored_json(const Store& store, const Machine& machine) {
  Json out = Json::array();
  for (const auto& p : machine.processes)
    if (const ProcessLedger* l = machine.ledger(p))
      for (const auto& e : l->entries)
        if (store.owns(e.update_path) && !store.find(e.id)) {
          Json j = process_json(p);
          j["id"] = e.id;
          out.push_back(std::move(j));
        }
  return out;
}

std::string who(const Json& p) {
  return fmt::format("process {} ({})", p["pid"].get<int>(), printable(p["command"].get<std::string>()));
}

void print_text(const Json& s) {
  fmt::print("store {}: {} update{}\n", s["root"].get<std::string>(), s["updates"].size(), s["updates"].size() == 1 ? "" : "s");
  for (const auto& u : s["updates"]) {
    std::vector<std::string> targets;
    for (const auto& t : u["targets"]) targets.push_back(t["name"]);
    std::string label = u["label"].get<std::string>();
    fmt::print("update {}  {}  installed {}  patch {}  for {}\n", u["id"].get<std::string>().substr(0, 8),
               label.empty() ? "(no label)" : printable(label), u["installed"].get<std::string>(),
               printable(u["patch"].get<std::string>()), printable(fmt::format("{}", fmt::join(targets, ", "))));
    if (u["applied"].empty() && u["not_applied"].empty()) fmt::print("  fits no running process\n");
    for (const auto& p : u["applied"]) fmt::print("  applied in {}\n", who(p));
    for (const auto& p : u["not_applied"])
      fmt::print("  not applied in {}: {}\n", who(p), printable(p["reason"].get<std::string>()));
  }
  if (!s["binaries"].empty()) fmt::print("effective versions\n");
  for (const auto& b : s["binaries"]) {
    std::string id = b["build_id"].get<std::string>();
    fmt::print("  {} (build-id {})\n", printable(b["name"].get<std::string>()), id.empty() ? "none" : id);
    for (const auto& p : b["processes"]) {
      std::string version = p["effective_version"].is_null() ? "not patched"
                            : p["effective_version"].get<std::string>().empty()
                                ? fmt::format("update {} (no label)", p["update"].get<std::string>().substr(0, 8))
                                : printable(p["effective_version"].get<std::string>());
      fmt::print("    {}: {}\n", who(p), version);
    }
  }
  for (const auto& p : s["unstored"])
    fmt::print("applied but not stored (sync undoes it): {} in {}\n", p["id"].get<std::string>().substr(0, 8), who(p));
  for (const auto& p : s["problems"])
    fmt::print("store problem (skipped): {}: {}\n", printable(p["path"].get<std::string>()),
               printable(p["reason"].get<std::string>()));
}

}  // namespace

Exit run_status(Context& ctx, const ManagerOptions& opt) {
  Store store = Store::open(ctx, store_root(opt.root), false);
  Machine machine = Machine::read(ctx);
  Json s{{"root", store.root()}, {"updates", Json::array()}};
  for (const auto& u : store.updates()) s["updates"].push_back(update_json(store, machine, u));
  s["binaries"] = binaries_json(store, machine);
  s["unstored"] = unstored_json(store, machine);
  s["problems"] = Json::array();
  for (const auto& p : store.problems()) s["problems"].push_back(Json{{"path", p.path}, {"reason", p.reason}});
  if (ctx.json) fmt::print("{}\n", s.dump(2, ' ', false, Json::error_handler_t::replace));
  else print_text(s);
  return Exit::Ok;
}

}  // namespace ls::manager
