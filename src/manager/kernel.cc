// The kernel as a target of the manager (see kernel.h).
#include "manager/kernel.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "manager/store.h"

namespace ls::manager {

KernelState KernelState::read() {
  KernelState k;
  k.release = kernel::running_release();
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::getline(in, k.boot_id);
  auto core = kernel::read_core_state();
  if (!core) {
    k.error = core.status().message();
    return k;
  }
  k.sets = std::move(core->sets);
  k.pending = std::move(core->pending);
  return k;
}

bool KernelState::applied(const std::string& id) const {
  return std::any_of(sets.begin(), sets.end(), [&](const kernel::AppliedSet& s) { return s.id == id; });
}

const kernel::Pending* KernelState::pending_of(const std::string& id) const {
  for (const auto& p : pending)
    if (p.id == id) return &p;
  return nullptr;
}

std::string kernel_misfit(const update::Manifest& m, const KernelState& k) {
  if (m.kernel_release == k.release) return {};
  return fmt::format("made for kernel {}, this one is {}", m.kernel_release, k.release);
}

KernelClaims KernelClaims::load(const std::string& root, const std::string& boot_id) {
  KernelClaims c;
  c.path_ = root + "/kernel.json";
  c.boot_id_ = boot_id;
  std::ifstream in(c.path_);
  if (!in) return c;   // nothing claimed yet
  std::ostringstream text;
  text << in.rdbuf();
  auto j = nlohmann::json::parse(text.str(), nullptr, false);
  // Another boot's claims (or a damaged file): nothing of them is applied now.
  if (!j.is_object() || j.value("boot_id", "") != boot_id || !j.contains("ids") || !j["ids"].is_array()) return c;
  for (const auto& id : j["ids"])
    if (id.is_string()) c.ids_.insert(id.get<std::string>());
  return c;
}

void KernelClaims::claim(const std::string& id) {
  if (ids_.insert(id).second) save();
}

void KernelClaims::release(const std::string& id) {
  if (ids_.erase(id)) save();
}

void KernelClaims::save() const {
  nlohmann::json j{{"boot_id", boot_id_}, {"ids", ids_}};
  write_atomically(path_, j.dump(2) + "\n");
}

std::string default_core(const std::string& release) {
  std::string installed = "/lib/modules/" + release + "/extra/livesplice.ko";
  return ::access(installed.c_str(), R_OK) == 0 ? installed : std::string();
}

}  // namespace ls::manager
