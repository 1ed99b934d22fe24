// Covering the tree with overlays, so that create's builds cannot change it.
//
// What is hard: create runs the user's build inside the user's tree, and the build
// writes what it likes — compiler outputs, but also catalogues xgettext regenerates,
// kbuild's .*.cmd files, man pages rewritten through shell redirections — in place,
// through the inode the tree already had. A snapshot by hard links shares that inode, so
// it loses the old bytes; the compiler wrapper only sees the compiler's own outputs; and
// nothing in user space sees every write of every process early enough to copy the file
// first. The kernel does: an overlay mounted over each root sends every write to an
// upper layer in the work directory, copying a file up whole before its first write
// (only the files written, in place or not), and keeps renames, deletions, new files and
// metadata changes there too. The tree underneath is never written. Unmounting shows it
// as it was, whatever the build did; a create killed with SIGKILL takes the overlays
// with it.
//
// The mounts live in a mount namespace of this process alone (propagation off, so
// nothing leaks to the rest of the system): as root, a new mount namespace; otherwise a
// new user namespace that maps only the caller's own uid and gid, so the build runs as
// the user it always ran as (unprivileged user namespaces; overlay in one needs Linux
// 5.11). This must happen while create is single-threaded. Where neither is allowed
// (a container without the capability, user namespaces disabled, a work directory an
// overlay cannot use as its upper layer), cover() says why and the TreeGuard falls back
// to hard links and saved copies. Once inside its namespace, create stays there:
// uncover() unmounts, and then the namespace sees the same tree as everyone else.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/diag.h"

namespace ls::create {

class TreeOverlay {
 public:
  // Covers each of `roots` (existing directories, absolute) with an overlay whose layers
  // are under `layers_dir` (created; it must not lie under a root). Returns null and
  // sets `why` when this system does not allow it; then nothing is mounted, though the
  // process may already be in its own (identical) mount namespace.
  static std::unique_ptr<TreeOverlay> cover(Context& ctx, std::vector<std::string> roots,
                                            const std::string& layers_dir, std::string& why);
  ~TreeOverlay();   // uncover(); never throws
  TreeOverlay(const TreeOverlay&) = delete;
  TreeOverlay& operator=(const TreeOverlay&) = delete;

  // Unmounts: the roots show the untouched tree again. Idempotent. Returns the roots
  // that could not be unmounted (each reported with ctx.warn).
  std::vector<std::string> uncover();

 private:
  TreeOverlay(Context& ctx, std::vector<std::string> mounted) : ctx_(ctx), mounted_(std::move(mounted)) {}

  Context& ctx_;
  std::vector<std::string> mounted_;   // in mount order: parents before children
};

}  // namespace ls::create
