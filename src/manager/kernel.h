// The running kernel as one more target of the update manager.
//
// A kernel update (create --kernel) is stored like any other; it fits the running kernel
// when the release it was made for (the manifest's kernel.release) is `uname -r`, and
// run-pre matching, as always, decides the rest. It is applied and undone by the same
// `apply --kernel` / `undo --kernel` a user runs (kernel/apply.h), in a child of its own.
// What is applied is what livesplice.ko lists (its sets and its pending updates): the
// core is the kernel's ledger, and it is empty again after every boot, which is why the
// boot-time sync (systemd/livesplice-sync.service) applies the store again.
//
// What is hard: the core records an update's id, not where it came from, so it cannot
// say which sets this store applied (sync must never undo an update applied by hand, or
// from another --root). The store keeps that itself: ROOT/kernel.json names the ids it
// applied in this boot (the kernel's boot_id), written *before* each apply, so that an
// apply whose manager was killed still counts as the store's; a claim of an earlier boot
// means nothing, since nothing survives a reboot in the kernel.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "base/diag.h"
#include "kernel/apply.h"
#include "update/manifest.h"

namespace ls::manager {

struct KernelState {
  std::string release;                      // uname -r
  std::string boot_id;                      // /proc/sys/kernel/random/boot_id
  std::vector<kernel::AppliedSet> sets;     // applied, newest first
  std::vector<kernel::Pending> pending;     // waiting for their module to load
  std::string error;                        // livesplice.ko could not be asked (then both empty)

  // Reads livesplice.ko's state (nothing applied when it is not loaded).
  static KernelState read();
  bool applied(const std::string& id) const;
  const kernel::Pending* pending_of(const std::string& id) const;
  // The kernel's key where the store keeps failed attempts (as a process's is pid and
  // start time): this boot's.
  std::string key() const { return "kernel-" + boot_id.substr(0, 8); }
  std::string name() const { return "the kernel (" + release + ")"; }
};

// "" when kernel update `m` is for the running kernel; else why not.
std::string kernel_misfit(const update::Manifest& m, const KernelState& k);

// ROOT/kernel.json: the kernel updates this store applied in this boot (see above).
class KernelClaims {
 public:
  static KernelClaims load(const std::string& root, const std::string& boot_id);
  bool owns(const std::string& id) const { return ids_.count(id) > 0; }
  // Written at once (crash-safely): before an apply, after an undo.
  void claim(const std::string& id);
  void release(const std::string& id);

 private:
  void save() const;
  std::string path_, boot_id_;
  std::set<std::string> ids_;
};

// Where livesplice.ko is when --core does not say: where `make modules_install` puts
// an out-of-tree module for the running kernel, if it is there; else "" (and an apply
// that needs to load it says so).
std::string default_core(const std::string& release);

}  // namespace ls::manager
