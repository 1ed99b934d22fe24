// See build.h for how the tree is kept restorable. This file also knows how to start the
// common build systems with the wrapper in front of the compiler: PATH symlinks for
// make, autotools and anything that runs `cc`/`gcc` by name; compiler and linker
// launchers for CMake, whose cache holds the compiler's absolute path so that PATH
// alone would not reach it.
#include "create/build.h"

#include <algorithm>
#include <climits>
#include <functional>
#include <cerrno>
#include <csignal>
#include <condition_variable>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <gelf.h>
#include <mutex>
#include <regex>
#include <thread>
#include <unistd.h>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/process.h"

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

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-+./=:,@%") == std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string tail_lines(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "    " + all[i] + "\n";
  return out;
}

size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  return static_cast<size_t>(std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n'));
}

}  // namespace

std::string_view to_string(Phase p) { return p == Phase::Pre ? "pre" : "post"; }

// ---- records ------------------------------------------------------------------------

void Records::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return;
  std::string line;
  size_t lineno = 0;
  auto strings = [](const nlohmann::json& j, const char* key) {
    std::vector<std::string> v;
    if (j.contains(key)) v = j.at(key).get<std::vector<std::string>>();
    return v;
  };
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      auto j = nlohmann::json::parse(line);
      Phase phase = j.value("phase", "pre") == "post" ? Phase::Post : Phase::Pre;
      std::string kind = j.at("kind").get<std::string>();
      if (kind == "compile") {
        CompileRecord r;
        r.phase = phase;
        r.cwd = j.at("cwd").get<std::string>();
        r.tool = j.at("tool").get<std::string>();
        r.argv = strings(j, "argv");
        r.exec = strings(j, "exec");
        r.output = j.at("output").get<std::string>();
        r.source = j.at("source").get<std::string>();
        r.deps = strings(j, "deps");
        r.lto = j.value("lto", false);
        compiles.push_back(std::move(r));
      } else if (kind == "link") {
        LinkRecord r;
        r.phase = phase;
        r.cwd = j.at("cwd").get<std::string>();
        r.output = j.at("output").get<std::string>();
        r.objects = strings(j, "objects");
        r.archives = strings(j, "archives");
        r.shared_libs = strings(j, "shared_libs");
        r.libs = strings(j, "libs");
        r.libdirs = strings(j, "libdirs");
        r.sources = strings(j, "sources");
        r.shared = j.value("shared", false);
        r.relocatable = j.value("relocatable", false);
        links.push_back(std::move(r));
      } else if (kind == "archive") {
        ArchiveRecord r;
        r.phase = phase;
        r.output = j.at("output").get<std::string>();
        r.objects = strings(j, "objects");
        archives.push_back(std::move(r));
      }
    } catch (const nlohmann::json::exception& e) {
      fail("{}:{}: malformed wrapper record: {}", path, lineno, e.what());
    }
  }
}

// ---- workspace ----------------------------------------------------------------------

Workspace::Workspace(Context& ctx, const std::string& wrapper_path, bool keep)
    : ctx_(ctx), keep_(keep) {
  std::error_code ec;
  wrapper_ = fs::weakly_canonical(wrapper_path, ec).string();
  if (ec || access(wrapper_.c_str(), X_OK) != 0)
    fail("compiler wrapper not found at {} (build the livesplice-cc target next to livesplice)",
         wrapper_path);
  const char* tmp = getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/livesplice-create.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) fail("cannot create a work directory in {}: {}", templ, errno_text());
  dir_ = fs::canonical(buf.data()).string();
  shim_dir_ = dir_ + "/bin";
  fs::create_directories(shim_dir_);
  fs::create_directories(saved_dir());
  fs::create_directories(pre_objects_dir());

  // A symlink for every compiler and archiver name found on PATH, so that whichever
  // the build asks for (gcc-12, x86_64-linux-gnu-g++, ar) reaches the wrapper first.
  static const std::regex kToolName(
      R"(^([A-Za-z0-9_]+-linux-gnu[A-Za-z0-9_]*-)?(cc|c\+\+|gcc|g\+\+|clang|clang\+\+|ar|ranlib)(-[0-9]+(\.[0-9]+)*)?$)");
  std::set<std::string> names = {"cc", "c++", "gcc", "g++", "ar", "ranlib"};
  const char* path = getenv("PATH");
  std::string path_list = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= path_list.size()) {
    size_t end = path_list.find(':', start);
    if (end == std::string::npos) end = path_list.size();
    std::string d = path_list.substr(start, end - start);
    start = end + 1;
    if (d.empty()) continue;
    for (const auto& e : fs::directory_iterator(d, ec)) {
      std::string n = e.path().filename().string();
      if (std::regex_match(n, kToolName)) names.insert(n);
    }
  }
  for (const auto& n : names) {
    if (symlink(wrapper_.c_str(), (shim_dir_ + "/" + n).c_str()) != 0)
      fail("cannot create {}/{}: {}", shim_dir_, n, errno_text());
  }
  ctx_.note(fmt::format("work directory {} ({} tool names wrapped)", dir_, names.size()));
}

Workspace::~Workspace() {
  if (keep_) {
    ctx_.progress(fmt::format("work directory kept: {}", dir_));
    return;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string Workspace::record_file(Phase p) const {
  return fmt::format("{}/records.{}.jsonl", dir_, to_string(p));
}

std::string Workspace::log_file(Phase p) const {
  return fmt::format("{}/build.{}.log", dir_, to_string(p));
}

std::map<std::string, std::string> Workspace::build_env(Phase p) const {
  const char* path = getenv("PATH");
  return {
      {"PATH", shim_dir_ + ":" + (path ? path : "/usr/bin:/bin")},
      {"LIVESPLICE_RECORD", record_file(p)},
      {"LIVESPLICE_BACKUP_DIR", saved_dir()},
      {"LIVESPLICE_PRE_DIR", p == Phase::Post ? pre_objects_dir() : ""},
      {"LIVESPLICE_PHASE", std::string(to_string(p))},
      {"LIVESPLICE_ACTIVE", ""},
  };
}

std::map<std::string, std::string> Workspace::configure_env() const {
  return {
      {"LIVESPLICE_RECORD", ""},
      {"LIVESPLICE_BACKUP_DIR", saved_dir()},
      {"LIVESPLICE_PRE_DIR", ""},
      {"LIVESPLICE_PHASE", "configure"},
      {"LIVESPLICE_ACTIVE", ""},
  };
}

// ---- tree guard ---------------------------------------------------------------------

TreeGuard::TreeGuard(Context& ctx, std::vector<std::string> roots, std::string saved_dir, std::string links_dir)
    : ctx_(ctx), roots_(std::move(roots)), saved_dir_(std::move(saved_dir)), links_dir_(std::move(links_dir)) {
  struct stat links_st {};
  bool linking = !links_dir_.empty() && mkdir(links_dir_.c_str(), 0700) == 0 &&
                 stat(links_dir_.c_str(), &links_st) == 0;
  uint32_t next_link = 1;
  size_t linked = 0;
  auto record = [&](const std::string& p) {
    EntryState e;
    if (!lstat_entry(p, e)) return;
    if (linking && e.type == EntryState::File) {
      struct stat st;
      if (stat(p.c_str(), &st) == 0 && st.st_dev == links_st.st_dev &&
          link(p.c_str(), fmt::format("{}/{}", links_dir_, next_link).c_str()) == 0) {
        e.hard_link = next_link++;
        ++linked;
      }
    }
    snapshot_[p] = e;
  };
  for (const auto& root : roots_) {
    EntryState st;
    if (!lstat_entry(root, st)) {
      missing_roots_.insert(root);
      continue;
    }
    record(root);
    walk(root, [&](const std::string& p) {
      record(p);
      return true;
    });
  }
  ctx_.note(fmt::format("snapshot of {} entries under {} ({} hard-linked)", snapshot_.size(),
                        fmt::join(roots_, ", "), linked));
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

// ---- planning and running builds ----------------------------------------------------

BuildPlan plan_build(Context& ctx, const std::string& source_dir, const std::string& build_dir,
                     const std::string& build_cmd, const std::string& wrapper_path) {
  BuildPlan plan;
  plan.source_dir = source_dir;
  bool cmake_project = fs::exists(source_dir + "/CMakeLists.txt");
  plan.build_dir = !build_dir.empty() ? build_dir : cmake_project && build_cmd.empty() ? source_dir + "/build" : source_dir;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());

  // CMake keeps the compiler's absolute path in its cache: reach it with launchers.
  // Reconfiguring an existing build directory only rewrites generated files (saved
  // beforehand and restored); the Makefile generator does not rebuild objects for it.
  auto cmake_configure = [&] {
    std::vector<std::string> cmd = {"cmake", "-S", source_dir, "-B", plan.build_dir};
    for (const char* lang : {"C", "CXX"})
      for (const char* what : {"COMPILER", "LINKER"})
        cmd.push_back(fmt::format("-DCMAKE_{}_{}_LAUNCHER={}", lang, what, wrapper_path));
    std::ifstream cache(plan.build_dir + "/CMakeCache.txt");
    std::string line;
    while (std::getline(cache, line))
      if (line.rfind("CMAKE_C_COMPILER_LAUNCHER:", 0) == 0 || line.rfind("CMAKE_CXX_COMPILER_LAUNCHER:", 0) == 0)
        if (line.find('=') != std::string::npos && line.substr(line.find('=') + 1) != wrapper_path &&
            !line.substr(line.find('=') + 1).empty())
          ctx.warn(fmt::format("{}/CMakeCache.txt: {}: replaced by livesplice-cc for this run",
                               plan.build_dir, line));
    plan.configure.push_back(cmd);
  };

  if (!build_cmd.empty()) {
    plan.system = "custom";
    plan.build_shell = build_cmd;
    plan.build_cwd = source_dir;
    if (fs::exists(plan.build_dir + "/CMakeCache.txt")) cmake_configure();
    return plan;
  }
  if (cmake_project) {
    plan.system = "cmake";
    cmake_configure();
    plan.build_shell = fmt::format("cmake --build {} -j {}", shell_quote(plan.build_dir), jobs);
    plan.build_cwd = plan.build_dir;
    return plan;
  }
  bool has_makefile = false;
  for (const char* m : {"GNUmakefile", "makefile", "Makefile"})
    if (fs::exists(plan.build_dir + "/" + m)) has_makefile = true;
  if (has_makefile) {
    plan.system = "make";
  } else if (access((source_dir + "/configure").c_str(), X_OK) == 0) {
    plan.system = "configure+make";
    plan.configure.push_back({source_dir + "/configure"});
  } else {
    fail("{}: no Makefile, CMakeLists.txt or configure script; pass --build-cmd", source_dir);
  }
  plan.build_shell = fmt::format("make -j{}", jobs);
  plan.build_cwd = plan.build_dir;
  return plan;
}

BuildStats run_build(Context& ctx, const BuildPlan& plan, const Workspace& ws, Phase phase) {
  auto start = std::chrono::steady_clock::now();
  std::error_code ec;
  fs::create_directories(plan.build_dir, ec);
  RunOptions opts;
  opts.env = ws.build_env(phase);
  opts.log_file = ws.log_file(phase);
  std::string record = ws.record_file(phase);

  // A ticker: on long builds (a kernel) say how far the build got every few seconds.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread ticker([&] {
    // Interrupts are for the thread that runs the build (see core/process.h).
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::unique_lock lock(mu);
    size_t last = 0;
    while (!cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; })) {
      size_t n = count_lines(record);
      if (n == last) continue;
      last = n;
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ctx.progress(fmt::format("  {} build: {} compiles/links so far ({:.0f} s)", to_string(phase), n, s));
    }
  });
  auto stop_ticker = [&] {
    {
      std::lock_guard lock(mu);
      done = true;
    }
    cv.notify_all();
    if (ticker.joinable()) ticker.join();
  };

  try {
    if (phase == Phase::Pre) {
      for (const auto& step : plan.configure) {
        opts.cwd = plan.build_dir;
        opts.env = ws.configure_env();
        ctx.note(fmt::format("configure: {}", fmt::join(step, " ")));
        RunResult r = run(step, opts);
        if (r.status != 0)
          fail("configure step `{}` failed (exit {}) in {}:\n{}", fmt::join(step, " "), r.status,
               plan.build_dir, tail_lines(opts.log_file, 20));
      }
    }
    opts.cwd = plan.build_cwd;
    opts.env = ws.build_env(phase);
    ctx.note(fmt::format("build: {} (in {})", plan.build_shell, plan.build_cwd));
    RunResult r = run_shell(plan.build_shell, opts);
    if (r.status != 0)
      fail("{} build failed (exit {}): `{}` in {}; last lines of {}:\n{}", to_string(phase), r.status,
           plan.build_shell, plan.build_cwd, opts.log_file, tail_lines(opts.log_file, 20));
  } catch (...) {
    stop_ticker();
    throw;
  }
  stop_ticker();

  Records recs;
  recs.load(record);
  BuildStats stats;
  stats.compiled = recs.compiles.size();
  stats.linked = recs.links.size();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

// ---- linked binaries ----------------------------------------------------------------

bool is_elf_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char magic[4] = {};
  ssize_t n = read(fd, magic, 4);
  close(fd);
  return n == 4 && std::memcmp(magic, "\177ELF", 4) == 0;
}

std::string read_build_id(const std::string& path) {
  if (!is_elf_file(path)) return {};
  elf_version(EV_CURRENT);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string id;
  if (Elf* elf = elf_begin(fd, ELF_C_READ, nullptr)) {
    Elf_Scn* scn = nullptr;
    while (id.empty() && (scn = elf_nextscn(elf, scn))) {
      GElf_Shdr shdr;
      if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_NOTE) continue;
      Elf_Data* data = elf_getdata(scn, nullptr);
      if (!data) continue;
      size_t off = 0, name_off = 0, desc_off = 0;
      GElf_Nhdr nhdr;
      while ((off = gelf_getnote(data, off, &nhdr, &name_off, &desc_off)) > 0) {
        const char* base = static_cast<const char*>(data->d_buf);
        if (nhdr.n_type == NT_GNU_BUILD_ID && nhdr.n_namesz == 4 &&
            std::memcmp(base + name_off, "GNU", 4) == 0) {
          for (size_t i = 0; i < nhdr.n_descsz; ++i)
            id += fmt::format("{:02x}", static_cast<uint8_t>(base[desc_off + i]));
          break;
        }
      }
    }
    elf_end(elf);
  }
  close(fd);
  return id;
}

namespace {

// Member names of an `ar` archive: basenames for a normal archive, paths (relative to
// the archive's directory, made absolute) for a thin one. Used for archives built by
// an `ar` the wrapper did not see (CMake runs it by absolute path).
std::vector<std::string> archive_members(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  bool thin = data.rfind("!<thin>\n", 0) == 0;
  if (!thin && data.rfind("!<arch>\n", 0) != 0) return out;
  std::string longnames;
  size_t off = 8;
  std::string dir = fs::path(path).parent_path().string();
  while (off + 60 <= data.size()) {
    std::string name = data.substr(off, 16);
    uint64_t size = std::strtoull(data.substr(off + 48, 10).c_str(), nullptr, 10);
    size_t body = off + 60;
    name.erase(name.find_last_not_of(' ') + 1);
    bool stored = true;
    if (name == "/" || name == "/SYM64/") {
    } else if (name == "//") {
      longnames = data.substr(body, std::min<uint64_t>(size, data.size() - body));
    } else {
      if (name.size() > 1 && name[0] == '/') {
        size_t at = std::strtoul(name.c_str() + 1, nullptr, 10);
        size_t end = longnames.find('\n', at);
        name = at < longnames.size() ? longnames.substr(at, end == std::string::npos ? std::string::npos : end - at) : "";
      }
      if (!name.empty() && name.back() == '/') name.pop_back();
      if (thin) {
        stored = false;
        out.push_back(fs::path(dir + "/" + name).lexically_normal().string());
      } else {
        out.push_back(name);
      }
    }
    if (!stored) size = 0;
    off = body + size + (size & 1);
  }
  return out;
}

}  // namespace

std::map<std::string, std::vector<std::string>> map_objects_to_binaries(const Records& records) {
  std::map<std::string, std::vector<std::string>> archive_members_of;
  for (const auto& a : records.archives) {
    auto& m = archive_members_of[a.output];
    m.insert(m.end(), a.objects.begin(), a.objects.end());
  }
  std::map<std::string, std::vector<std::string>> by_basename;
  for (const auto& c : records.compiles)
    by_basename[fs::path(c.output).filename().string()].push_back(c.output);
  std::map<std::string, const LinkRecord*> partial;
  for (const auto& l : records.links)
    if (l.relocatable) partial[l.output] = &l;

  std::function<void(const std::string&, std::set<std::string>&, int)> expand =
      [&](const std::string& input, std::set<std::string>& objs, int depth) {
        if (depth > 16) return;
        if (auto it = partial.find(input); it != partial.end()) {
          for (const auto& o : it->second->objects) expand(o, objs, depth + 1);
          for (const auto& a : it->second->archives) expand(a, objs, depth + 1);
          return;
        }
        if (fs::path(input).extension() == ".a") {
          auto it = archive_members_of.find(input);
          if (it == archive_members_of.end()) {
            std::vector<std::string> members;
            for (const auto& m : archive_members(input)) {
              if (m.find('/') != std::string::npos) members.push_back(m);
              else if (auto b = by_basename.find(m); b != by_basename.end())
                members.insert(members.end(), b->second.begin(), b->second.end());
            }
            it = archive_members_of.emplace(input, members).first;
          }
          for (const auto& m : it->second) expand(m, objs, depth + 1);
          return;
        }
        objs.insert(input);
      };

  std::map<std::string, std::vector<std::string>> result;
  auto add = [&](const std::string& obj, const std::string& bin) {
    auto& v = result[obj];
    if (std::find(v.begin(), v.end(), bin) == v.end()) v.push_back(bin);
  };
  for (const auto& l : records.links) {
    if (l.relocatable) continue;
    std::set<std::string> objs;
    for (const auto& o : l.objects) expand(o, objs, 0);
    for (const auto& a : l.archives) expand(a, objs, 0);
    for (const auto& lib : l.libs) {
      // -lfoo: the linker prefers libfoo.so; an object in a shared library belongs to it.
      for (const auto& d : l.libdirs) {
        if (fs::exists(d + "/lib" + lib + ".so")) break;
        if (fs::exists(d + "/lib" + lib + ".a")) {
          expand(d + "/lib" + lib + ".a", objs, 0);
          break;
        }
      }
    }
    for (const auto& o : objs) add(o, l.output);
  }
  // Objects that only reach a partial link (a kernel module's .o) belong to it.
  for (const auto& [out, l] : partial) {
    std::set<std::string> objs;
    expand(out, objs, 0);
    for (const auto& o : objs)
      if (!result.count(o)) add(o, out);
  }
  return result;
}

std::vector<std::string> recompile_command(const CompileRecord& rec, const std::string& output) {
  const auto& in = rec.exec.empty() ? rec.argv : rec.exec;
  std::vector<std::string> out;
  out.push_back(rec.tool.empty() ? in[0] : rec.tool);
  for (size_t i = 1; i < in.size(); ++i) {
    const std::string& a = in[i];
    if (a == "-MD" || a == "-MMD" || a == "-MP") continue;
    if (a == "-MF" || a == "-MT" || a == "-MQ" || a == "-o") {
      ++i;
      continue;
    }
    if (a.rfind("-MF", 0) == 0 || a.rfind("-MT", 0) == 0 || a.rfind("-MQ", 0) == 0) continue;
    if (a.rfind("-Wp,-MD,", 0) == 0 || a.rfind("-Wp,-MMD,", 0) == 0) continue;
    if (a.rfind("-o", 0) == 0) continue;
    out.push_back(a);
  }
  out.push_back("-o");
  out.push_back(output);
  return out;
}

}  // namespace ls::create
