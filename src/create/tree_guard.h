// Keeping a tree restorable: see build.h for the layout of saved copies and links.
#pragma once

#include <sys/stat.h>
#include <ctime>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/diag.h"

namespace ls::create {

struct EntryState {
  enum Type { File, Dir, Symlink, Other } type = File;
  uint64_t size = 0;
  struct timespec mtime {};
  struct timespec atime {};
  mode_t mode = 0;
  std::string link_target;
  uint32_t hard_link = 0;   // number of its hard link in the links directory, 0: none
};

class TreeGuard {
 public:
  // Takes the snapshot of every entry under `roots` (a root that does not exist yet is
  // removed entirely on restore). `saved_dir` is where copies live (layout above);
  // `links_dir`, if not empty, receives a hard link to every file of the snapshot that
  // lies on its filesystem.
  TreeGuard(Context& ctx, std::vector<std::string> roots, std::string saved_dir, std::string links_dir = {});
  ~TreeGuard();   // restore() unless done; never throws
  TreeGuard(const TreeGuard&) = delete;
  TreeGuard& operator=(const TreeGuard&) = delete;

  // Never removed nor restored (the update being written, the work directory).
  void exclude(const std::string& path);
  // Saves a copy of `path` before create changes it (absent file: nothing to save).
  void save(const std::string& path);
  // Saves every regular file under `dir` that is not an ELF file.
  void save_metadata(const std::string& dir);
  bool existed(const std::string& path) const { return snapshot_.count(path) != 0; }
  // The saved copy of `path` if there is one.
  std::optional<std::string> saved_copy(const std::string& path) const;

  // Puts back only `paths` (the patched sources): copies restored, new files removed.
  void restore_files(const std::vector<std::string>& paths);
  // Puts back everything. Returns the paths that could not be restored (each also
  // reported with ctx.warn). Idempotent.
  std::vector<std::string> restore();

 private:
  bool same(const std::string& path, const EntryState& want) const;
  bool restore_entry(const std::string& path, const EntryState& want);
  bool is_excluded(const std::string& path) const;
  bool is_excluded_ancestor(const std::string& path) const;

  Context& ctx_;
  std::vector<std::string> roots_;
  std::set<std::string> missing_roots_;
  std::string saved_dir_;
  std::string links_dir_;
  std::map<std::string, EntryState> snapshot_;
  std::vector<std::string> excluded_;
  bool restored_ = false;
};

}  // namespace ls::create
