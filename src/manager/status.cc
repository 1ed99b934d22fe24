// `livesplice status [--json]`: the store, and what of it is applied where (Uptrack's
// show): in processes and in the running kernel, with the effective versions, and for
// what is not applied why (the last failure, its kind and the sync backoff's next
// attempt). Read-only: it takes the store's lock shared and no process's lock (machine.h).
//
// It also answers what an administrator asks after a package upgrade (Debian's
// needrestart asks it too): which processes still run code older than what is on disk,
// because the file they mapped was replaced or deleted since they started. Such a
// process is covered when a live update applied there brings the version now installed:
// its effective version is the installed package's version (dpkg). Anything else still
// needs a restart, and status says why: no stored update fits it, one fits and failed
// (its error), or the applied update's label is another version.
#include <ctime>
#include <map>
#include <optional>

#include <fmt/ranges.h>

#include "manager/machine.h"
#include "manager/manager.h"
#include "base/subprocess.h"
#include "manager/store.h"

namespace ls::manager {

namespace {

using Json = nlohmann::ordered_json;

Json process_json(const RunningProcess& p) {
  return Json{{"pid", p.pid}, {"start_time", p.start_time}, {"command", p.command}};
}

Json kernel_json(const KernelState& k) { return Json{{"target", "kernel"}, {"release", k.release}}; }

// The last failures of update `id` on the target with key `key`, as status says them
// (and when a sync tries again: the backoff); nullopt when none is kept.
std::optional<std::string> last_failure(const Store& store, const std::string& id, const std::string& key) {
  const Attempt* a = store.attempt(id, key);
  if (!a) return std::nullopt;
  std::string failures = fmt::format("failed {} time{}, last at {}: {}", a->count, a->count == 1 ? "" : "s", a->at,
                                     a->error);
  if (a->next > std::time(nullptr))
    return fmt::format("retrying: {}, next attempt after {} ({})", a->kind_text.empty() ? "failed" : a->kind_text,
                       iso(a->next), failures);
  return failures + "; the next sync tries again";
}

// Why a target is not patched, as a kind (--json): the failure's (child.h), else what
// the reason says.
Json failure_fields(const Store& store, const std::string& id, const std::string& key, const char* otherwise) {
  const Attempt* a = store.attempt(id, key);
  if (!a) return Json{{"kind", otherwise}, {"next_attempt", nullptr}};
  return Json{{"kind", a->kind.empty() ? "other" : a->kind}, {"next_attempt", iso(a->next)}};
}

constexpr const char* kNotTried = "not tried yet (livesplice sync applies it)";

// Why a fitting process does not have the update applied.
std::string not_applied_reason(const Store& store, const Machine& machine, const StoredUpdate& u,
                               const RunningProcess& p) {
  if (const ProcessLedger* l = machine.ledger(p); l && !l->error.empty())
    return "its ledger cannot be read: " + l->error;
  if (const proc::LedgerEntry* e = machine.entry(p, u.id))
    return fmt::format("{} (left by a killed command; the next sync puts it right)", proc::to_string(e->state));
  return last_failure(store, u.id, p.key()).value_or(kNotTried);
}

// Why a kernel update made for this kernel is not applied there.
std::string kernel_not_applied_reason(const Store& store, const KernelState& k, const StoredUpdate& u) {
  if (const kernel::Pending* w = k.pending_of(u.id))
    return w->failure.empty() ? fmt::format("pending until module {} loads", w->module)
                              : fmt::format("pending for module {}, failed: {}", w->module, w->failure);
  if (!k.error.empty()) return "livesplice.ko cannot be asked: " + k.error;
  return last_failure(store, u.id, k.key()).value_or(kNotTried);
}

Json update_json(const Store& store, const Machine& machine, const StoredUpdate& u) {
  Json applied = Json::array(), missing = Json::array(), targets = Json::array();
  for (const auto& t : u.manifest().targets) targets.push_back(Json{{"name", t.name}, {"build_id", t.build_id}});
  if (u.manifest().kernel) {
    std::string misfit = kernel_misfit(u.manifest(), machine.kernel);
    if (misfit.empty() && machine.kernel.applied(u.id)) {
      applied.push_back(kernel_json(machine.kernel));
    } else if (misfit.empty()) {
      Json j = kernel_json(machine.kernel);
      j["reason"] = kernel_not_applied_reason(store, machine.kernel, u);
      j.update(failure_fields(store, u.id, machine.kernel.key(),
                              machine.kernel.pending_of(u.id) ? "pending" : "not-tried"));
      missing.push_back(std::move(j));
    }
    return Json{{"id", u.id},          {"label", u.label()},   {"installed", u.installed}, {"path", u.path},
                {"patch", u.manifest().patch_name}, {"kernel", true}, {"kernel_release", u.manifest().kernel_release},
                {"not_for_this_kernel", misfit.empty() ? Json(nullptr) : Json(misfit)}, {"targets", targets},
                {"applied", applied}, {"not_applied", missing}};
  }
  for (const auto& p : machine.processes) {
    if (fits(u.manifest(), p).empty()) continue;
    const proc::LedgerEntry* e = machine.entry(p, u.id);
    if (e && e->state == proc::EntryState::Applied) {
      applied.push_back(process_json(p));
    } else {
      Json j = process_json(p);
      j["reason"] = not_applied_reason(store, machine, u, p);
      j.update(failure_fields(store, u.id, p.key(), machine.entry(p, u.id) ? "interrupted" : "not-tried"));
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

// The running kernel: its updates (newest first; stored or not), pending ones, and its
// effective version, the label of the newest applied stored update.
Json kernel_status_json(const Store& store, const KernelState& k) {
  Json updates = Json::array(), pending = Json::array(), effective = nullptr, newest = nullptr;
  for (const auto& set : k.sets) {
    const StoredUpdate* u = store.find(set.id);
    if (u && newest.is_null()) {
      effective = u->label();
      newest = u->id;
    }
    updates.push_back(Json{{"id", set.id}, {"label", u ? Json(u->label()) : Json(nullptr)}, {"stored", u != nullptr},
                           {"module", set.module}, {"functions", set.functions}});
  }
  for (const auto& w : k.pending)
    pending.push_back(Json{{"id", w.id}, {"stored", store.find(w.id) != nullptr}, {"waits_for", w.module},
                           {"failure", w.failure}});
  return Json{{"release", k.release}, {"effective_version", effective}, {"update", newest},
              {"updates", updates}, {"pending", pending}, {"error", k.error.empty() ? Json(nullptr) : Json(k.error)}};
}

// Updates this store applied that it no longer holds (sync undoes them).
Json unstored_json(const Store& store, const Machine& machine) {
  Json out = Json::array();
  KernelClaims claims = KernelClaims::load(store.root(), machine.kernel.boot_id);
  for (const auto& set : machine.kernel.sets)
    if (claims.owns(set.id) && !store.find(set.id)) {
      Json j = kernel_json(machine.kernel);
      j["id"] = set.id;
      out.push_back(std::move(j));
    }
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

struct Package {
  std::string name, version;
};

// The Debian package that owns `path`, with its installed version; nullopt when no
// package does (or there is no dpkg). Debian 12 merged /usr: dpkg may know a library
// under /lib that the loader mapped from /usr/lib, or the other way round.
std::optional<Package> owning_package(const std::string& path) {
  if (!find_program("dpkg-query", std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin")) return std::nullopt;
  std::vector<std::string> candidates{path};
  if (path.starts_with("/usr/")) candidates.push_back(path.substr(4));
  else candidates.push_back("/usr" + path);
  for (const auto& p : candidates) {
    RunResult owner = run({"dpkg-query", "-S", p}, {.interruptible = false});
    size_t colon = owner.output.find(": ");
    if (owner.status != 0 || colon == std::string::npos || owner.output.find('\n') < colon) continue;
    std::string name = owner.output.substr(0, colon);
    if (name.find(", ") != std::string::npos) name = name.substr(0, name.find(", "));   // diverted or shared
    RunResult version = run({"dpkg-query", "-W", "-f", "${Version}", name}, {.interruptible = false});
    if (version.status == 0 && !version.output.empty()) return Package{name, version.output};
  }
  return std::nullopt;
}

// Processes whose mapped binaries were replaced or deleted on disk since they started,
// and whether live updates cover that (see the top of this file).
Json outdated_json(const Store& store, const Machine& machine, const Json& binaries) {
  std::map<std::string, std::optional<Package>> packages;
  Json out = Json::array();
  for (const auto& p : machine.processes)
    for (const auto& b : p.binaries) {
      if (!b.replaced) continue;
      auto known = packages.find(b.path);
      if (known == packages.end()) known = packages.emplace(b.path, owning_package(b.path)).first;
      const std::optional<Package>& pkg = known->second;
      Json effective = nullptr;   // from binaries_json: this process, this binary
      for (const auto& bj : binaries)
        if (bj["name"] == b.name && bj["build_id"] == b.build_id)
          for (const auto& pj : bj["processes"])
            if (pj["pid"] == p.pid) effective = pj["effective_version"];
      std::vector<std::string> failures;
      for (const auto& u : store.updates()) {
        auto f = fits(u.manifest(), p);
        if (std::none_of(f.begin(), f.end(), [&](const Fit& x) { return x.binary->path == b.path; })) continue;
        const proc::LedgerEntry* e = machine.entry(p, u.id);
        if (!e || e->state != proc::EntryState::Applied)
          failures.push_back(fmt::format("update {} fits but is not applied: {}", u.short_id(),
                                         not_applied_reason(store, machine, u, p)));
      }
      bool covered = pkg && effective.is_string() && effective.get<std::string>() == pkg->version;
      std::string why;
      if (covered) why = "covered: the live updates applied bring the installed version";
      else if (!failures.empty()) why = failures.front();
      else if (effective.is_null()) why = "no stored update fits it: restart it";
      else if (!pkg) why = fmt::format("the file is not from a package: whether the live updates (effective version "
                                       "'{}') bring what is on disk cannot be told", effective.get<std::string>());
      else why = fmt::format("the live updates bring version '{}', the installed package is {}: restart it",
                             effective.get<std::string>(), pkg->version);
      Json j = process_json(p);
      j["path"] = b.path;
      j["package"] = pkg ? Json(pkg->name) : Json(nullptr);
      j["installed_version"] = pkg ? Json(pkg->version) : Json(nullptr);
      j["effective_version"] = effective;
      j["covered"] = covered;
      j["reason"] = why;
      out.push_back(std::move(j));
    }
  return out;
}

std::string who(const Json& p) {
  if (p.contains("release")) return fmt::format("the kernel ({})", printable(p["release"].get<std::string>()));
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
    if (u.contains("not_for_this_kernel") && !u["not_for_this_kernel"].is_null())
      fmt::print("  not for this kernel: {}\n", printable(u["not_for_this_kernel"].get<std::string>()));
    else if (u["applied"].empty() && u["not_applied"].empty())
      fmt::print("  fits no running process\n");
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
  const Json& k = s["kernel"];
  if (!k["updates"].empty() || !k["pending"].empty()) {
    fmt::print("kernel {}: effective version {}\n", printable(k["release"].get<std::string>()),
               k["effective_version"].is_null()              ? std::string("(no stored update applied)")
               : k["effective_version"].get<std::string>().empty()
                   ? fmt::format("update {} (no label)", k["update"].get<std::string>().substr(0, 8))
                   : printable(k["effective_version"].get<std::string>()));
    for (const auto& u : k["updates"])
      fmt::print("  applied {}{}: {}\n", u["id"].get<std::string>().substr(0, 8),
                 u["stored"].get<bool>() ? "" : " (not from this store)",
                 printable(fmt::format("{}", fmt::join(u["functions"].get<std::vector<std::string>>(), ", "))));
    for (const auto& w : k["pending"])
      fmt::print("  pending {} until module {} loads{}\n", w["id"].get<std::string>().substr(0, 8),
                 printable(w["waits_for"].get<std::string>()),
                 w["failure"].get<std::string>().empty() ? "" : ": failed: " + printable(w["failure"].get<std::string>()));
  }
  if (!k["error"].is_null()) fmt::print("kernel: livesplice.ko cannot be asked: {}\n", printable(k["error"].get<std::string>()));
  for (const auto& p : s["unstored"])
    fmt::print("applied but not stored (sync undoes it): {} in {}\n", p["id"].get<std::string>().substr(0, 8), who(p));
  if (!s["outdated"].empty()) fmt::print("running code older than what is on disk\n");
  for (const auto& o : s["outdated"])
    fmt::print("  {}: {}{}: {}\n", who(o), printable(o["path"].get<std::string>()),
               o["package"].is_null() ? std::string()
                                      : fmt::format(" (package {} {})", printable(o["package"].get<std::string>()),
                                                    printable(o["installed_version"].get<std::string>())),
               printable(o["reason"].get<std::string>()));
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
  s["kernel"] = kernel_status_json(store, machine.kernel);
  s["unstored"] = unstored_json(store, machine);
  s["outdated"] = outdated_json(store, machine, s["binaries"]);
  s["problems"] = Json::array();
  for (const auto& p : store.problems()) s["problems"].push_back(Json{{"path", p.path}, {"reason", p.reason}});
  if (ctx.json) fmt::print("{}\n", s.dump(2, ' ', false, Json::error_handler_t::replace));
  else print_text(s);
  return Exit::Ok;
}

}  // namespace ls::manager
