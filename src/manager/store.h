// The store: the updates a machine should have applied, kept by the update manager
// (`livesplice install | remove | sync | status`, manager.h).
//
// What is hard is that any command may die at any step (SIGKILL, power loss) and the
// store must still say one clear thing. So every file is written whole elsewhere first
// (a temporary name, fsync, rename, fsync of the directory): a reader sees the old file
// or the new one, never half of one. The layout:
//   ROOT/lock                 flock(2): exclusive for every command that changes the
//                             store or the processes, shared for status and --dry-run
//   ROOT/updates/ID.lsu       an update, byte for byte as create wrote it, named by its id
//   ROOT/updates/ID.json      when it was installed and in which order (the order
//                             updates are applied in, so that one made on top of
//                             another comes after it)
//   ROOT/attempts.json        the last failure per update and target (process or kernel),
//                             its kind and when sync may try again (the backoff), for status
//   ROOT/kernel.json          the kernel updates this store applied in this boot (kernel.h)
// The update file is the truth: an ID.json without its update is a leftover of a
// killed install or remove and is deleted; an update without one (killed between the
// two renames, or installed by a Debian package: livesplice package) is kept, ordered
// after the others by its file's modification time. Every update is read through the one
// reader of the format (update::Contents: digest, schema) each time the store is
// opened; a file that fails it, is not named by its own id, or is not the store's at
// all is a problem reported and skipped, never a reason to stop the others.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/diag.h"
#include "update/contents.h"

namespace ls::manager {

// The store's directory when neither --root nor LIVESPLICE_ROOT says otherwise.
inline constexpr const char* kDefaultRoot = "/var/lib/livesplice";

struct StoredUpdate {
  std::string id;                  // update::Contents::id
  std::string path;                // ROOT/updates/ID.lsu, absolute: what the ledgers record
  std::string installed;           // ISO 8601, UTC ("" when its ID.json was lost)
  uint64_t sequence = 0;           // install order
  std::shared_ptr<const update::Contents> contents;   // verified

  const update::Manifest& manifest() const { return contents->manifest; }
  std::string label() const { return manifest().label; }
  std::string short_id() const { return id.substr(0, 8); }
};

// A file in the store that is not a usable update: reported, skipped.
struct StoreProblem {
  std::string path;
  std::string reason;
};

// One failed attempt to apply an update to a process (or the kernel), kept for status
// and for the backoff of later syncs: after the n-th failure in a row, sync tries again
// no sooner than first delay × 4^(n-1) later (capped at a day).
struct Attempt {
  std::string error;
  std::string at;                  // ISO 8601, UTC
  int count = 0;                   // consecutive failures
  std::string kind;                // FailureKind::name (child.h); "" in a record of an older livesplice
  std::string kind_text;           // FailureKind::text
  int64_t next = 0;                // epoch seconds: sync tries again from then on
};

class Store {
 public:
  // Opens (creating it when `exclusive`) the store at `root` and takes its lock:
  // exclusive for commands that change anything, shared for those that only look. Waits
  // for a command holding it, saying so once on stderr. Throws ls::Error.
  static Store open(Context& ctx, const std::string& root, bool exclusive);

  const std::string& root() const { return root_; }
  // Valid updates, in install order.
  const std::vector<StoredUpdate>& updates() const { return updates_; }
  const std::vector<StoreProblem>& problems() const { return problems_; }
  const StoredUpdate* find(const std::string& id) const;
  // Updates whose id starts with `prefix`.
  std::vector<const StoredUpdate*> matching(const std::string& prefix) const;
  // Whether `path` (as a ledger records it) names an update in this store's directory:
  // what this store applied, as opposed to `apply` by hand or another store.
  bool owns(const std::string& path) const;

  // Verifies `file` and copies it in (crash-safely); the stored update, or the stored
  // one already there. Throws ls::Error for a file that is not a usable update.
  const StoredUpdate& add(const std::string& file);
  // Takes the update out of the store (the update first, then its ID.json).
  void remove(const std::string& id);

  // Failed attempts, by update id and then by process ("PID-STARTTIME").
  const std::map<std::string, std::map<std::string, Attempt>>& attempts() const { return attempts_; }
  void record_failure(const std::string& id, const std::string& process, const std::string& error,
                      const std::string& kind, const std::string& kind_text, int first_delay_s);
  // The failure kept for update `id` on target `process`, or nullptr.
  const Attempt* attempt(const std::string& id, const std::string& process) const;
  void record_success(const std::string& id, const std::string& process);
  // Writes attempts.json if anything changed (crash-safely).
  void save_attempts();

  Store(Store&& o) noexcept;
  Store& operator=(Store&&) = delete;
  ~Store();

 private:
  Store() = default;
  void load(Context& ctx);
  std::string updates_dir() const { return root_ + "/updates"; }

  std::string root_;
  int lock_fd_ = -1;
  bool exclusive_ = false;
  std::vector<StoredUpdate> updates_;
  std::vector<StoreProblem> problems_;
  std::map<std::string, std::map<std::string, Attempt>> attempts_;
  bool attempts_changed_ = false;
};

// The store's directory: `flag` when given, else $LIVESPLICE_ROOT, else kDefaultRoot;
// absolute and normalized (ledgers compare paths under it).
std::string store_root(const std::string& flag);

// Writes `bytes` to `path` whole or not at all: a temporary beside it, fsync, rename,
// fsync of the directory. Throws ls::Error.
void write_atomically(const std::string& path, std::string_view bytes);

std::string now_iso();
std::string iso(int64_t epoch_seconds);

}  // namespace ls::manager
