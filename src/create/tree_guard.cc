// The tree guard: a snapshot of every entry of the source and build directories, then
// either overlays that take every write of the builds (tree_overlay.h) or, where they
// cannot be mounted, saved copies of what the builds overwrite and hard links that keep
// files the build replaces by rename; restore() uncovers or puts everything back, and
// verifies it against the snapshot (see build.h).
#include "create/build.h"   // is_elf_file; includes tree_guard.h

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <functional>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/ranges.h>

namespace fs = std::filesystem;

namespace ls::create {
namespace {

std::string errno_text() { return strerror(errno); }

bool lstat_entry(const std::string& path, EntryState& out) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return false;
  if (S_ISREG(st.st_mode)) out.type = EntryState::File;
  else if (S_ISDIR(st.st_mode)) out.type = EntryState::Dir;
  else if (S_ISLNK(st.st_mode)) out.type = EntryState::Symlink;
  else out.type = EntryState::Other;
  out.size = out.type == EntryState::File ? static_cast<uint64_t>(st.st_size) : 0;
  out.mtime = st.st_mtim;
  out.atime = st.st_atim;
  out.mode = st.st_mode & 07777;
  out.link_target.clear();
  if (out.type == EntryState::Symlink) {
    std::vector<char> buf(PATH_MAX + 1);
    ssize_t n = readlink(path.c_str(), buf.data(), buf.size() - 1);
    if (n >= 0) out.link_target.assign(buf.data(), static_cast<size_t>(n));
  }
  return true;
}

bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// Calls fn(path) for every entry below dir (not dir itself), parents before children,
// never following symlinks.
template <typename Fn>
void walk(const std::string& dir, Fn&& fn) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string_view n(e->d_name);
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    std::string p = dir == "/" ? "/" + n : dir + "/" + n;
    bool descend = fn(p);
    if (descend) {
      struct stat st;
      if (lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) walk(p, fn);
    }
  }
}

// Copies a regular file with its mode and timestamps into `dst`, writing in place when
// `dst` exists (so its other hard links see the old content again).
void copy_preserving(const std::string& src, const std::string& dst) {
  struct stat st;
  if (stat(src.c_str(), &st) != 0) fail("cannot read {}: {}", src, errno_text());
  std::error_code ec;
  fs::create_directories(fs::path(dst).parent_path(), ec);
  int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) fail("cannot read {}: {}", src, errno_text());
  int out = open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 07777);
  if (out < 0) {
    close(in);
    fail("cannot write {}: {}", dst, errno_text());
  }
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(in);
      close(out);
      fail("reading {}: {}", src, errno_text());
    }
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        close(in);
        close(out);
        fail("writing {}: {}", dst, errno_text());
      }
      off += w;
    }
  }
  close(in);
  fchmod(out, st.st_mode & 07777);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  futimens(out, times);
  if (close(out) != 0) fail("writing {}: {}", dst, errno_text());
}


}  // namespace


TreeGuard::TreeGuard(Context& ctx, std::vector<std::string> roots, std::string saved_dir, std::string links_dir,
                     const std::string& layers_dir)
    : ctx_(ctx), roots_(std::move(roots)), saved_dir_(std::move(saved_dir)), links_dir_(std::move(links_dir)) {
  for (const auto& root : roots_) {
    EntryState st;
    if (!lstat_entry(root, st)) {
      missing_roots_.insert(root);
      continue;
    }
    snapshot_[root] = st;
    walk(root, [&](const std::string& p) {
      EntryState e;
      if (!lstat_entry(p, e)) return true;
      snapshot_[p] = e;
      // A binary's build-id as it was before any build: the program running now was
      // linked from it (the builds relink it, under an overlay or in place).
      if (e.type == EntryState::File && (e.mode & 0111) && is_elf_file(p)) {
        std::string id = read_build_id(p);
        if (!id.empty()) build_ids_[p] = id;
      }
      return true;
    });
  }
  if (!layers_dir.empty()) {
    // The overlay needs a directory to cover; restore() removes it with the missing root.
    for (const auto& root : missing_roots_) mkdir(root.c_str(), 0755);
    overlay_ = TreeOverlay::cover(ctx_, roots_, layers_dir, uncovered_reason_);
    if (overlay_) {
      ctx_.note(fmt::format("snapshot of {} entries under {} (covered)", snapshot_.size(), fmt::join(roots_, ", ")));
      return;
    }
  }
  ctx_.note(fmt::format("snapshot of {} entries under {} ({} hard-linked)", snapshot_.size(),
                        fmt::join(roots_, ", "), link_snapshot()));
}

size_t TreeGuard::link_snapshot() {
  struct stat links_st {};
  if (links_dir_.empty() || mkdir(links_dir_.c_str(), 0700) != 0 || stat(links_dir_.c_str(), &links_st) != 0)
    return 0;
  uint32_t next_link = 1;
  for (auto& [p, e] : snapshot_) {
    if (e.type != EntryState::File) continue;
    struct stat st;
    if (stat(p.c_str(), &st) == 0 && st.st_dev == links_st.st_dev &&
        link(p.c_str(), fmt::format("{}/{}", links_dir_, next_link).c_str()) == 0)
      e.hard_link = next_link++;
  }
  return next_link - 1;
}

TreeGuard::~TreeGuard() {
  if (restored_) return;
  try {
    restore();
  } catch (const std::exception& e) {
    ctx_.warn(fmt::format("restoring the tree: {}", e.what()));
  }
}

void TreeGuard::exclude(const std::string& path) { excluded_.push_back(path); }

bool TreeGuard::is_excluded(const std::string& path) const {
  for (const auto& e : excluded_)
    if (path == e || (path.size() > e.size() && path.compare(0, e.size(), e) == 0 && path[e.size()] == '/'))
      return true;
  return false;
}

bool TreeGuard::is_excluded_ancestor(const std::string& path) const {
  for (const auto& e : excluded_)
    if (e.size() > path.size() && e.compare(0, path.size(), path) == 0 && e[path.size()] == '/') return true;
  return false;
}

std::optional<std::string> TreeGuard::saved_copy(const std::string& path) const {
  std::string copy = saved_dir_ + "/files" + path;
  if (access(copy.c_str(), F_OK) == 0) return copy;
  return std::nullopt;
}

void TreeGuard::save(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
  if (saved_copy(path)) return;
  copy_preserving(path, saved_dir_ + "/files" + path);
}

void TreeGuard::save_metadata(const std::string& dir) {
  size_t n = 0;
  walk(dir, [&](const std::string& p) {
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) return false;
    if (S_ISREG(st.st_mode) && !is_elf_file(p)) {
      save(p);
      ++n;
    }
    return true;
  });
  ctx_.note(fmt::format("saved {} build-system files under {}", n, dir));
}

bool TreeGuard::same(const std::string& path, const EntryState& want) const {
  EntryState cur;
  if (!lstat_entry(path, cur) || cur.type != want.type) return false;
  switch (want.type) {
    case EntryState::File:
      return cur.size == want.size && same_time(cur.mtime, want.mtime) && cur.mode == want.mode;
    case EntryState::Dir:
      return cur.mode == want.mode && same_time(cur.mtime, want.mtime);
    case EntryState::Symlink:
      return cur.link_target == want.link_target;
    case EntryState::Other:
      return true;
  }
  return true;
}

bool TreeGuard::restore_entry(const std::string& path, const EntryState& want) {
  EntryState cur;
  bool exists = lstat_entry(path, cur);
  std::error_code ec;
  switch (want.type) {
    case EntryState::Dir:
      if (exists && cur.type != EntryState::Dir) fs::remove(path, ec);
      if (!exists || cur.type != EntryState::Dir) mkdir(path.c_str(), want.mode | 0700);
      return true;   // mode and times are set once everything inside is back
    case EntryState::File: {
      // A copy whose size or mtime differs from the snapshot was taken after something
      // we do not intercept had already changed the file: it is not the original. The
      // hard link is the original inode; it too is only good if nothing wrote through it.
      auto original = [&](const std::string& candidate) {
        EntryState saved;
        return lstat_entry(candidate, saved) && saved.type == EntryState::File && saved.size == want.size &&
               same_time(saved.mtime, want.mtime);
      };
      std::optional<std::string> copy = saved_copy(path);
      if (copy && !original(*copy)) copy.reset();
      if (!copy && want.hard_link) {
        std::string link = fmt::format("{}/{}", links_dir_, want.hard_link);
        if (original(link)) copy = link;
      }
      if (!copy) return false;
      if (exists && cur.type != EntryState::File) fs::remove_all(path, ec);
      // The file still is the linked inode (only its mode changed): copying it onto
      // itself would truncate it first.
      struct stat a, b;
      bool same_inode = stat(copy->c_str(), &a) == 0 && stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
                        a.st_ino == b.st_ino;
      if (!same_inode) copy_preserving(*copy, path);
      chmod(path.c_str(), want.mode);
      struct timespec times[2] = {want.atime, want.mtime};
      utimensat(AT_FDCWD, path.c_str(), times, 0);
      return true;
    }
    case EntryState::Symlink: {
      if (exists) fs::remove_all(path, ec);
      if (symlink(want.link_target.c_str(), path.c_str()) != 0) return false;
      struct timespec times[2] = {want.atime, want.mtime};
      utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW);
      return true;
    }
    case EntryState::Other:
      return exists;
  }
  return false;
}

void TreeGuard::restore_files(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    auto it = snapshot_.find(p);
    if (it == snapshot_.end()) {
      std::error_code ec;
      fs::remove(p, ec);
      continue;
    }
    if (!same(p, it->second) && !restore_entry(p, it->second))
      fail("{}: cannot restore (no saved copy)", p);
  }
}

std::vector<std::string> TreeGuard::restore() {
  std::error_code ec;
  // 0. Uncover: the tree underneath is as it was, unless written around the overlays;
  // the steps below then find nothing to do, and verify that.
  std::vector<std::string> stuck;
  if (overlay_) stuck = overlay_->uncover();
  if (!stuck.empty()) {
    // Still covered: what the steps below saw would be the builds' layer, not the tree.
    restored_ = true;
    return stuck;
  }
  overlay_.reset();
  // 1. Remove what the run created.
  std::function<void(const std::string&)> prune = [&](const std::string& dir) {
    walk(dir, [&](const std::string& p) {
      if (is_excluded(p)) return false;
      if (!snapshot_.count(p)) {
        if (is_excluded_ancestor(p)) return true;
        fs::remove_all(p, ec);
        return false;
      }
      return true;
    });
  };
  for (const auto& root : roots_) {
    EntryState st;
    if (!lstat_entry(root, st)) continue;
    prune(root);
    if (missing_roots_.count(root) && !is_excluded_ancestor(root) && !is_excluded(root))
      fs::remove_all(root, ec);
  }
  // 2. Put back what changed, parents before children (std::map order).
  std::vector<std::string> problems;
  for (const auto& [path, want] : snapshot_) {
    if (is_excluded(path) || same(path, want)) continue;
    try {
      if (!restore_entry(path, want)) problems.push_back(path);
    } catch (const Error& e) {
      ctx_.warn(e.what());
      problems.push_back(path);
    }
  }
  // 3. Directory modes and times last: everything above changed them.
  for (auto it = snapshot_.rbegin(); it != snapshot_.rend(); ++it) {
    const auto& [path, want] = *it;
    if (want.type != EntryState::Dir || is_excluded(path)) continue;
    chmod(path.c_str(), want.mode);
    struct timespec times[2] = {want.atime, want.mtime};
    utimensat(AT_FDCWD, path.c_str(), times, 0);
  }
  // 4. Verify.
  std::vector<std::string> left;
  for (const auto& [path, want] : snapshot_) {
    if (is_excluded(path) || same(path, want)) continue;
    left.push_back(path);
  }
  for (const auto& p : left)
    ctx_.warn(fmt::format("{}: could not be restored to its state before create (changed by a build "
                          "step livesplice does not intercept)", p));
  restored_ = true;
  return left;
}

}  // namespace ls::create
