// See tree_overlay.h: why the builds run under overlays, and in which namespace.
#include "create/tree_overlay.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace fs = std::filesystem;

namespace ls::create {
namespace {

bool write_proc(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

// Moves this process into a mount namespace of its own whose mounts propagate nowhere,
// through a user namespace mapping only our own ids when we lack CAP_SYS_ADMIN.
bool enter_own_mount_namespace(std::string& why) {
  if (unshare(CLONE_NEWNS) != 0) {
    int err = errno;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (err != EPERM) {
      why = fmt::format("no private mount namespace: {}", strerror(err));
      return false;
    }
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
      why = fmt::format("no private mount namespace: {} without CAP_SYS_ADMIN, and no user namespace: {}",
                        strerror(err), strerror(errno));
      return false;
    }
    // Unmapped, our own files would belong to nobody: there is no going on from here.
    // (setgroups must be denied before an unprivileged process may write its gid_map.)
    if (!write_proc("/proc/self/setgroups", "deny") ||
        !write_proc("/proc/self/uid_map", fmt::format("{} {} 1", uid, uid)) ||
        !write_proc("/proc/self/gid_map", fmt::format("{} {} 1", gid, gid)))
      fail("cannot map uid {} and gid {} into the user namespace create entered: {}", uid, gid, strerror(errno));
  }
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    why = fmt::format("cannot make the mounts of a private namespace private: {}", strerror(errno));
    return false;
  }
  return true;
}

// The working directory is a reference to a directory, not a path: after mounting over
// it (or unmounting) it still names the layer it named before. Look it up again.
// (create itself uses absolute paths; this is for anything relative after it.)
void refresh_working_directory() {
  char buf[PATH_MAX];
  if (getcwd(buf, sizeof buf) && chdir(buf) != 0) return;   // then the old reference stays
}

// A mount point strictly below one of `roots` ("" if none): an overlay's lower layer is
// one file system, so the build would find that directory empty.
std::string mount_below(const std::vector<std::string>& roots) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    if (!(fields >> id >> parent >> devno >> root >> point)) continue;
    std::string path;   // spaces and the like come as \ooo
    for (size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        path += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        path += point[i];
      }
    }
    for (const auto& r : roots)
      if (path.size() > r.size() && path.compare(0, r.size(), r) == 0 && path[r.size()] == '/') return path;
  }
  return {};
}

struct Handles {
  std::vector<int> fds;
  ~Handles() {
    for (int fd : fds) close(fd);
  }
  // An O_PATH handle; its /proc/self/fd name is a path with no character the overlay's
  // option string would take for a separator.
  std::string open_dir(const std::string& path) {
    int fd = open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("{}: {}", path, strerror(errno));
    fds.push_back(fd);
    return fmt::format("/proc/self/fd/{}", fd);
  }
};

}  // namespace

std::unique_ptr<TreeOverlay> TreeOverlay::cover(Context& ctx, std::vector<std::string> roots,
                                                const std::string& layers_dir, std::string& why) {
  // A parent sorts before its children, so a root inside another one is mounted on top.
  std::sort(roots.begin(), roots.end());
  std::vector<std::string> layers;
  try {
    for (size_t i = 0; i < roots.size(); ++i) {
      layers.push_back(fmt::format("{}/{}", layers_dir, i));
      fs::create_directories(layers.back() + "/upper");
      fs::create_directories(layers.back() + "/work");
    }
  } catch (const std::exception& e) {
    why = e.what();
    return nullptr;
  }
  if (std::string below = mount_below(roots); !below.empty()) {
    why = fmt::format("{} is a mount point inside the tree, which an overlay would hide", below);
    return nullptr;
  }
  if (!enter_own_mount_namespace(why)) return nullptr;

  // Handles opened inside the namespace (the overlay clones its layers' mounts, which
  // must be ours) and before anything is mounted (a lower layer is the tree itself).
  Handles handles;
  std::vector<std::string> options;
  try {
    for (size_t i = 0; i < roots.size(); ++i)
      options.push_back(fmt::format("lowerdir={},upperdir={},workdir={}", handles.open_dir(roots[i]),
                                    handles.open_dir(layers[i] + "/upper"), handles.open_dir(layers[i] + "/work")));
  } catch (const std::exception& e) {
    why = e.what();
    return nullptr;
  }

  std::unique_ptr<TreeOverlay> overlay(new TreeOverlay(ctx, {}));
  for (size_t i = 0; i < roots.size(); ++i) {
    // Some kernels refuse trusted.* attributes in a user namespace: then user.* ones.
    bool ok = mount("overlay", roots[i].c_str(), "overlay", 0, options[i].c_str()) == 0;
    int err = errno;
    if (!ok && geteuid() != 0)
      ok = mount("overlay", roots[i].c_str(), "overlay", 0, (options[i] + ",userxattr").c_str()) == 0;
    if (!ok) {
      why = fmt::format("cannot mount an overlay on {} (upper layer in {}): {}", roots[i], layers_dir,
                        strerror(err));
      overlay->uncover();
      return nullptr;
    }
    overlay->mounted_.push_back(roots[i]);
  }
  refresh_working_directory();
  ctx.note(fmt::format("covered {} with overlays; the builds write to {}", fmt::join(roots, ", "), layers_dir));
  return overlay;
}

TreeOverlay::~TreeOverlay() {
  try {
    uncover();
  } catch (...) {
  }
}

std::vector<std::string> TreeOverlay::uncover() {
  std::vector<std::string> stuck;
  for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) {
    // Detached rather than refused when a straggler of the build still has a file open.
    if (umount2(it->c_str(), MNT_DETACH) != 0) {
      ctx_.warn(fmt::format("{}: cannot unmount the overlay create's builds wrote to: {}", *it, strerror(errno)));
      stuck.push_back(*it);
    }
  }
  if (!mounted_.empty()) refresh_working_directory();
  mounted_.clear();
  return stuck;
}

}  // namespace ls::create
