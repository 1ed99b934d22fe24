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

#include "base/subprocess.h"

namespace fs = std::filesystem;

namespace ls::create {
namespace {

std::string errno_text() { return strerror(errno); }

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
      } else if (kind == "extract") {
        ExtractRecord r;
        r.phase = phase;
        r.dir = j.at("cwd").get<std::string>();
        r.archive = j.at("archive").get<std::string>();
        extracts.push_back(std::move(r));
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

void Records::append(const Records& other) {
  compiles.insert(compiles.end(), other.compiles.begin(), other.compiles.end());
  links.insert(links.end(), other.links.begin(), other.links.end());
  archives.insert(archives.end(), other.archives.begin(), other.archives.end());
  extracts.insert(extracts.end(), other.extracts.begin(), other.extracts.end());
}

// ---- workspace ----------------------------------------------------------------------

namespace {

std::string find_wrapper(const std::string& wrapper_path) {
  std::error_code ec;
  std::string wrapper = fs::weakly_canonical(wrapper_path, ec).string();
  if (ec || access(wrapper.c_str(), X_OK) != 0)
    fail("compiler wrapper not found at {} (build the livesplice-cc target next to livesplice)",
         wrapper_path);
  return wrapper;
}

// The directory holding livesplice/patch.h, for both builds: installed with the
// programs (PREFIX/include/livesplice/patch.h beside PREFIX/lib/livesplice/livesplice-cc,
// as `cmake --install` and the Debian package lay them out, or PREFIX/bin/), else the
// source tree livesplice was built from; "" when none has it.
std::string patch_header_dir(const std::string& wrapper) {
  std::error_code ec;
  const fs::path programs = fs::path(wrapper).parent_path();
  for (fs::path dir : {programs.parent_path().parent_path() / "include", programs.parent_path() / "include",
                       fs::path(LIVESPLICE_SOURCE_INCLUDE_DIR)})
    if (fs::exists(dir / "livesplice" / "patch.h", ec)) return dir.string();
  return "";
}

}  // namespace

Workspace::Workspace(Context& ctx, const std::string& wrapper_path, bool keep)
    : wrapper_(find_wrapper(wrapper_path)), work_(ctx, "livesplice-create", keep), shim_dir_(dir() + "/bin") {
  std::error_code ec;
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
  ctx.note(fmt::format("work directory {} ({} tool names wrapped)", dir(), names.size()));
}

std::string Workspace::record_file(Phase p) const {
  return fmt::format("{}/records.{}.jsonl", dir(), to_string(p));
}

std::string Workspace::log_file(Phase p) const {
  return fmt::format("{}/build.{}.log", dir(), to_string(p));
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
      // A patch may include <livesplice/patch.h> (hooks, shadow data): on the post build's
      // include path, and on the pre build's for a tree an earlier such patch was applied
      // to (an update stacked on one with hooks).
      {"LIVESPLICE_INCLUDE", patch_header_dir(wrapper_)},
  };
}

std::map<std::string, std::string> Workspace::configure_env() const {
  return {
      {"LIVESPLICE_RECORD", ""},
      {"LIVESPLICE_BACKUP_DIR", saved_dir()},
      {"LIVESPLICE_PRE_DIR", ""},
      {"LIVESPLICE_PHASE", "configure"},
      {"LIVESPLICE_ACTIVE", ""},
      {"LIVESPLICE_INCLUDE", ""},
  };
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
    // Interrupts are for the thread that runs the build (see base/subprocess.h).
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

  // The members of an archive: as recorded, or else read from it (a member named only by
  // its basename is every compiled object of that name).
  auto members_of = [&](const std::string& archive) -> const std::vector<std::string>& {
    auto it = archive_members_of.find(archive);
    if (it == archive_members_of.end()) {
      std::vector<std::string> members;
      for (const auto& m : archive_members(archive)) {
        if (m.find('/') != std::string::npos) members.push_back(m);
        else if (auto b = by_basename.find(m); b != by_basename.end())
          members.insert(members.end(), b->second.begin(), b->second.end());
      }
      it = archive_members_of.emplace(archive, members).first;
    }
    return it->second;
  };
  std::map<std::string, std::set<std::string>> extracted_into;   // directory -> archives
  for (const auto& x : records.extracts) extracted_into[x.dir].insert(x.archive);

  std::function<void(const std::string&, std::set<std::string>&, int)> expand =
      [&](const std::string& input, std::set<std::string>& objs, int depth) {
        if (depth > 16) return;
        // A copy extracted from an archive stands for that archive's member of its name
        // (its own path names no compiled object; libtool deletes it once re-archived).
        if (auto x = extracted_into.find(fs::path(input).parent_path().string()); x != extracted_into.end()) {
          std::string name = fs::path(input).filename().string();
          for (const auto& archive : x->second)
            for (const auto& member : members_of(archive))
              if (fs::path(member).filename() == name) expand(member, objs, depth + 1);
          return;
        }
        if (auto it = partial.find(input); it != partial.end()) {
          for (const auto& o : it->second->objects) expand(o, objs, depth + 1);
          for (const auto& a : it->second->archives) expand(a, objs, depth + 1);
          return;
        }
        if (fs::path(input).extension() == ".a") {
          for (const auto& m : members_of(input)) expand(m, objs, depth + 1);
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
