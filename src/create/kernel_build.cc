// The kernel build driver (see kernel_build.h).
#include "create/kernel_build.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace fs = std::filesystem;

namespace ls::create {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read", path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) fail("{}: cannot write", path);
}

// FNV-1a: a cache key, not a security boundary.
std::string hash_hex(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

// Blocks until the exclusive lock on `path` is ours; says so when it has to wait.
int lock_file(Context& ctx, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot open lock file: {}", path, std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ctx.progress(fmt::format("waiting for another livesplice using {}", fs::path(path).replace_extension().string()));
    while (::flock(fd, LOCK_EX) != 0)
      if (errno != EINTR) fail("{}: flock: {}", path, std::strerror(errno));
  }
  return fd;
}

std::string tail_of(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "    | " + all[i] + "\n";
  return out;
}

// A line `CONFIG_NAME=value` of a config text ("" when absent or unset).
std::string config_value(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string prefix = name + "=";
  for (std::string l; std::getline(in, l);)
    if (l.rfind(prefix, 0) == 0) {
      std::string v = l.substr(prefix.size());
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  return {};
}

// The config with CONFIG_BUILD_SALT set to the release (what Debian's build does).
std::string with_build_salt(const std::string& text, const std::string& release) {
  std::istringstream in(text);
  std::string out;
  bool done = false;
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("CONFIG_BUILD_SALT=", 0) == 0 || l == "# CONFIG_BUILD_SALT is not set") {
      l = fmt::format("CONFIG_BUILD_SALT=\"{}\"", release);
      done = true;
    }
    out += l + "\n";
  }
  if (!done) out += fmt::format("CONFIG_BUILD_SALT=\"{}\"\n", release);
  return out;
}

bool is_tarball(const std::string& path) {
  static const std::regex kTar(R"(\.(tar|tar\.xz|txz|tar\.gz|tgz|tar\.bz2|tar\.zst)$)");
  return fs::is_regular_file(path) && std::regex_search(path, kTar);
}

// kbuild's saved command for `object`: `cmd_<object> := ...` (savedcmd_ in newer kernels).
std::string saved_command(const std::string& build, const std::string& object) {
  fs::path o(object);
  std::string cmd_file = build + "/" + o.parent_path().string() + "/." + o.filename().string() + ".cmd";
  std::ifstream in(cmd_file);
  if (!in) return {};
  std::string line;
  std::getline(in, line);
  for (std::string prefix : {"cmd_" + object + " := ", "savedcmd_" + object + " := "})
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  return {};
}

// While a long step runs: a progress line every 30 s with the elapsed time and the
// last line of its log, so a user sees a kernel build moving rather than a silent tool.
class Heartbeat {
 public:
  Heartbeat(const Context& ctx, std::string what, std::string log)
      : ctx_(ctx), what_(std::move(what)), log_(std::move(log)), t0_(Clock::now()), thread_([this] { loop(); }) {}
  ~Heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::seconds(30), [this] { return done_; })) {
      std::string last = tail_of(log_, 1);
      last = last.size() > 6 ? last.substr(6, last.size() - 7) : "";
      ctx_.progress(fmt::format("{}: {:.0f} s{}{}", what_, seconds_since(t0_), last.empty() ? "" : ", at: ", last));
    }
  }
  const Context& ctx_;
  std::string what_, log_;
  Clock::time_point t0_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

std::string default_kernel_cache() {
  const char* xdg = getenv("XDG_CACHE_HOME");
  std::string base = xdg && *xdg ? xdg : std::string(getenv("HOME") ? getenv("HOME") : "/tmp") + "/.cache";
  return base + "/livesplice/kernel";
}

std::string release_from_config(const std::string& config_path) {
  std::string name = fs::path(config_path).filename().string();
  if (name.rfind("config-", 0) == 0 && name.size() > 7) return name.substr(7);
  std::ifstream in(config_path);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return config_value(text, "CONFIG_BUILD_SALT");
}

KernelBuild::KernelBuild(Context& ctx, const std::string& source, const std::string& config,
                         const std::string& release, const std::string& cache_dir, const SignalGuard& signals)
    : ctx_(ctx), signals_(signals), cache_(cache_dir.empty() ? default_kernel_cache() : cache_dir) {
  kcflags_ = "-ffunction-sections -fdata-sections";
  fs::create_directories(cache_);
  unpack_if_tarball(source);
  if (!fs::exists(source_ + "/Makefile") || !fs::exists(source_ + "/Kbuild"))
    fail("{}: not a Linux source tree (no Makefile and Kbuild at its top)", source_);
  {
    std::string mk = read_text(source_ + "/Makefile");
    auto var = [&](const char* n) {
      std::smatch m;
      std::regex re(std::string("(^|\n)") + n + R"( = ([^\n]*))");
      return std::regex_search(mk, m, re) ? m[2].str() : std::string();
    };
    version_ = fmt::format("{}.{}.{}", var("VERSION"), var("PATCHLEVEL"), var("SUBLEVEL"));
  }
  if (fs::exists(source_ + "/.config") || fs::exists(source_ + "/include/config"))
    fail("{}: the source tree has been configured or built in place; kbuild builds out of tree (O=) only from a "
         "clean tree (make mrproper, or start from the source tarball)", source_);

  std::string config_text = with_build_salt(read_text(config), release);
  // The compiler the distribution used, by the name its config recorded.
  std::string cc_text = config_value(config_text, "CONFIG_CC_VERSION_TEXT");
  cc_ = cc_text.substr(0, cc_text.find(' '));
  if (cc_.empty()) fail("{}: no CONFIG_CC_VERSION_TEXT; is this a kernel config?", config);
  RunResult v = run({cc_, "--version"});
  if (v.status != 0)
    fail("{}: the kernel was built with {} ({}), which is not installed here; functions would not match the "
         "running kernel", config, cc_, cc_text);
  std::string first = v.output.substr(0, v.output.find('\n'));
  if (first != cc_text)
    ctx_.warn(fmt::format("{} says '{}', the config was made by '{}': pre code may not match the running kernel",
                          cc_, first, cc_text));

  std::string key_text = fmt::format("source={}\ncc={}\nkcflags={}\n{}", source_, cc_, kcflags_, config_text);
  std::string key = hash_hex(key_text);
  fs::create_directories(cache_ + "/build");
  build_ = cache_ + "/build/" + key;
  lock_fd_ = lock_file(ctx_, build_ + ".lock");
  std::string stamp = build_ + "/.livesplice-prepared";
  if (fs::exists(stamp) && read_text(stamp) == key_text) {
    ctx_.note(fmt::format("kernel build directory {} is prepared", build_));
    return;
  }
  prepare(config_text, key_text);
}

KernelBuild::~KernelBuild() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void KernelBuild::unpack_if_tarball(const std::string& source) {
  std::error_code ec;
  std::string abs = fs::canonical(source, ec).string();
  if (ec) fail("{}: {}", source, ec.message());
  if (!is_tarball(abs)) {
    source_ = abs;
    return;
  }
  struct stat st {};
  ::stat(abs.c_str(), &st);
  std::string stem = fs::path(abs).filename().string();
  stem = stem.substr(0, stem.find(".t"));
  std::string dir = fmt::format("{}/src/{}-{}", cache_, stem,
                                hash_hex(fmt::format("{}:{}:{}", abs, st.st_size, st.st_mtime)).substr(0, 12));
  fs::create_directories(cache_ + "/src");
  int fd = lock_file(ctx_, dir + ".lock");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  auto find_tree = [&]() -> std::string {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_directory() && fs::exists(e.path() / "Kbuild")) return e.path().string();
    return dir;
  };
  if (fs::exists(dir)) {
    source_ = find_tree();
    return;
  }
  std::string tmp = dir + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  ctx_.progress(fmt::format("unpacking {} into {} (once)…", abs, dir));
  auto t0 = Clock::now();
  RunResult r = run({"tar", "-xf", abs, "-C", tmp});
  if (r.status != 0) {
    fs::remove_all(tmp);
    fail("{}: tar failed:\n{}", abs, r.output);
  }
  fs::rename(tmp, dir);
  ctx_.progress(fmt::format("unpacked ({:.0f} s)", seconds_since(t0)));
  source_ = find_tree();
}

std::vector<std::string> KernelBuild::make_args() const {
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());
  return {"make", "-C", source_, "O=" + build_, "CC=" + cc_, "KCFLAGS=" + kcflags_, fmt::format("-j{}", jobs)};
}

void KernelBuild::prepare(const std::string& config_text, const std::string& key_text) {
  // A half-prepared directory from an interrupted run is started over.
  fs::remove_all(build_);
  fs::create_directories(build_);
  write_text(build_ + "/.config", config_text);
  std::string log = build_ + "/.livesplice-prepare.log";
  ctx_.progress(fmt::format("preparing the kernel build in {} (once per source and config; minutes)…", build_));
  auto t0 = Clock::now();
  RunOptions opts;
  opts.log_file = log;
  for (const auto& step : {std::vector<std::string>{"olddefconfig"}, std::vector<std::string>{"prepare", "modules_prepare"}}) {
    auto argv = make_args();
    argv.insert(argv.end(), step.begin(), step.end());
    ctx_.progress(fmt::format("make {}…", fmt::join(step, " ")));
    RunResult r;
    {
      Heartbeat beat(ctx_, fmt::format("make {}", fmt::join(step, " ")), log);
      r = run(argv, opts);
    }
    if (r.status != 0)
      fail("preparing the kernel build failed: {} (exit {}); the end of {}:\n{}", fmt::join(argv, " "), r.status, log,
           tail_of(log, 25));
    signals_.check();
  }
  // olddefconfig may drop options this machine cannot provide (a missing tool); those
  // would change the code, so say which.
  std::string after = read_text(build_ + "/.config");
  std::istringstream in(config_text);
  std::vector<std::string> lost;
  for (std::string l; std::getline(in, l);)
    if (l.rfind("CONFIG_", 0) == 0 && after.find(l + "\n") == std::string::npos) lost.push_back(l);
  if (!lost.empty())
    ctx_.warn(fmt::format("the configured build differs from the given config in {} option{}: {}", lost.size(),
                          lost.size() == 1 ? "" : "s", fmt::join(lost, ", ")));
  write_text(build_ + "/.livesplice-prepared", key_text);
  ctx_.progress(fmt::format("kernel build prepared ({:.0f} s)", seconds_since(t0)));
}

KernelObject KernelBuild::build_object(const std::string& source, const std::string& dest) {
  KernelObject k;
  k.source = source;
  k.object = source.substr(0, source.size() - 2) + ".o";
  std::string out = build_ + "/" + k.object;
  // Never trust what a previous run left: the object may be a post build whose source
  // has since been restored with its old mtime, which make would call up to date.
  fs::remove(out);
  auto t0 = Clock::now();
  std::string log = fs::path(dest).replace_extension(".log").string();
  fs::create_directories(fs::path(dest).parent_path());
  RunOptions opts;
  opts.cwd = build_;
  opts.log_file = log;
  std::string cmd = saved_command(build_, k.object);
  RunResult r;
  if (!cmd.empty() && cmd.find("-ffunction-sections") != std::string::npos) {
    r = run_shell(cmd, opts);
  } else {
    auto argv = make_args();
    argv.push_back(k.object);
    Heartbeat beat(ctx_, "make " + k.object, log);
    r = run(argv, opts);
  }
  if (r.status != 0 || !fs::exists(out))
    fail("{}: compiling failed (exit {}); the end of {}:\n{}", source, r.status, log, tail_of(log, 30));
  k.command = saved_command(build_, k.object);
  if (k.command.empty()) fail("{}: kbuild left no command in .{}.cmd", k.object, fs::path(k.object).filename().string());
  // -DMODULE is what kbuild adds to objects of loadable modules; KBUILD_MODNAME then
  // names the module (kbuild derived it from the Makefile's composite objects).
  static const std::regex kModname(R"(-DKBUILD_MODNAME='"([^"]+)\"')");
  std::smatch m;
  bool module = k.command.find(" -DMODULE ") != std::string::npos;
  if (module) {
    if (!std::regex_search(k.command, m, kModname)) fail("{}: built as module code but no KBUILD_MODNAME", k.object);
    k.module = m[1].str();
  } else {
    k.module = "vmlinux";
  }
  fs::copy_file(out, dest, fs::copy_options::overwrite_existing);
  fs::remove(out);
  ctx_.note(fmt::format("{}: built in {:.1f} s ({})", k.object, seconds_since(t0), k.module));
  return k;
}

}  // namespace ls::create

namespace ls::create {

// The skeleton is built once per headers directory and compiler, into the cache: a
// module with nothing but a license and a description (no init or exit function, so
// that its struct module carries no relocation and the update's module unloads).
std::vector<uint8_t> build_skeleton_module(Context& ctx, const std::string& headers, const std::string& compiler,
                                           const std::string& release, const std::string& cache_dir) {
  if (!fs::is_directory(headers) || !fs::exists(fs::path(headers) / "Makefile"))
    fail("{}: not a kernel headers directory (linux-headers-{}); give the matching headers package's directory "
         "with --headers",
         headers, release);
  std::string abs = fs::canonical(headers).string();
  std::string cache = cache_dir.empty() ? default_kernel_cache() : cache_dir;
  std::string dir = fmt::format("{}/skeleton/{}", cache, hash_hex(abs + "\n" + compiler + "\n" + release).substr(0, 16));
  std::string ko = dir + "/" + std::string(kSkeletonName) + ".ko";
  if (!fs::exists(ko)) {
    ctx.progress(fmt::format("building the update's skeleton module against {}", abs));
    std::string tmp = fmt::format("{}.tmp.{}", dir, getpid());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    write_text(tmp + "/Kbuild", fmt::format("obj-m := {}.o\n", kSkeletonName));
    write_text(tmp + "/" + std::string(kSkeletonName) + ".c",
               "// SPDX-License-Identifier: GPL-2.0\n"
               "// The identity of a livesplice kernel update's module (vermagic, struct module, __versions).\n"
               "#include <linux/module.h>\n"
               "MODULE_LICENSE(\"GPL\");\n"
               "MODULE_DESCRIPTION(\"livesplice: the new code of a kernel update\");\n");
    RunResult r = run({"make", "-s", "-C", abs, "M=" + tmp, "CC=" + compiler, "HOSTCC=" + compiler, "modules"});
    if (r.status != 0) {
      fs::remove_all(tmp);
      fail("building the skeleton module against {} failed:\n{}", abs, r.output);
    }
    // Only its identity is used: its debug information would only make every update bigger.
    RunResult strip = run({"objcopy", "--strip-debug", tmp + "/" + std::string(kSkeletonName) + ".ko"});
    if (strip.status != 0) fail("objcopy --strip-debug of the skeleton module failed:\n{}", strip.output);
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::rename(tmp, dir, ec);
    if (ec && !fs::exists(ko)) fail("{}: {}", dir, ec.message());
    fs::remove_all(tmp, ec);
  }
  std::string text = read_text(ko);
  // Its vermagic must be the running kernel's: headers of another release would make a
  // module the kernel refuses, or worse, one built for another struct module.
  std::string want = "vermagic=" + release + " ";
  if (text.find(want) == std::string::npos)
    fail("{}: the headers in {} are not for kernel {} (no '{}' in the skeleton's .modinfo)", ko, abs, release, want);
  return {text.begin(), text.end()};
}

}  // namespace ls::create
