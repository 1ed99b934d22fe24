// Keeping a tree restorable: see build.h for the layout of saved copies and links, and
// tree_overlay.h for covering the tree so that the builds cannot write it at all.
#pragma once

#include <sys/stat.h>
#include <ctime>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/diag.h"
#include "create/tree_overlay.h"

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
  // removed entirely on restore). `saved_dir` is where copies live (layout above). With
  // `layers_dir`, the roots are then covered with overlays whose layers live there (a
  // missing root is created for it); when that is not possible, or without it,
  // `links_dir`, if not empty, receives a hard link to every file of the snapshot that
  // lies on its filesystem.
  TreeGuard(Context& ctx, std::vector<std::string> roots, std::string saved_dir, std::string links_dir = {},
            const std::string& layers_dir = {});
  ~TreeGuard();   // restore() unless done; never throws
  TreeGuard(const TreeGuard&) = delete;
  TreeGuard& operator=(const TreeGuard&) = delete;

  // Never removed nor restored (the update being written, the work directory).
  void exclude(const std::string& path);
  // Saves a copy of `path` before create changes it (absent file: nothing to save).
  void save(const std::string& path);
  // Saves every regular file under `dir` that is not an ELF file.
  void save_metadata(const std::string& dir);
  // Whether the builds write to overlays rather than to the tree.
  bool covered() const { return overlay_ != nullptr; }
  // Why the tree could not be covered ("" when it is, or when not asked to).
  const std::string& uncovered_reason() const { return uncovered_reason_; }
  bool existed(const std::string& path) const { return snapshot_.count(path) != 0; }
  // The build-id an executable file of the tree (a program or shared library) had when
  // the guard was made; "" if none or not such a file then.
  std::string original_build_id(const std::string& path) const {
    auto it = build_ids_.find(path);
    return it == build_ids_.end() ? "" : it->second;
  }
  // The saved copy of `path` if there is one.
  std::optional<std::string> saved_copy(const std::string& path) const;

  // Puts back only `paths` (the patched sources): copies restored, new files removed.
  void restore_files(const std::vector<std::string>& paths);
  // Puts back everything: removes the overlays first (after which the tree is as it was,
  // unless something wrote to it around them), then repairs whatever still differs from
  // the snapshot. Returns the paths that could not be restored (each also reported with
  // ctx.warn). Idempotent.
  std::vector<std::string> restore();

 private:
  size_t link_snapshot();   // the hard links of the fallback; returns how many
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
  std::map<std::string, std::string> build_ids_;   // executable ELF files: path -> build-id, before any build
  std::vector<std::string> excluded_;
  std::unique_ptr<TreeOverlay> overlay_;
  std::string uncovered_reason_;
  bool restored_ = false;
};

}  // namespace ls::create
