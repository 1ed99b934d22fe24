// Writing an update package (see deb.h): a staged tree, then dpkg-deb.
#include "package/deb.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "base/subprocess.h"
#include "manager/store.h"
#include "update/contents.h"

namespace ls::package {

namespace fs = std::filesystem;

namespace {

// The temporary tree dpkg-deb packs, removed whatever happens.
class Stage {
 public:
  explicit Stage(const std::string& out_dir) {
    std::string pattern = out_dir + "/.livesplice-package.XXXXXX";
    if (!::mkdtemp(pattern.data())) fail("{}: cannot create a directory: {}", out_dir, std::strerror(errno));
    root_ = pattern;
    ::chmod(root_.c_str(), 0755);   // the tree's root is the package's "./"
  }
  ~Stage() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

// Debian policy 5.6.1: lower case letters, digits, '+', '-', '.'; two characters at
// least, starting with a letter or digit. Checked here because it also names the file.
void check_name(const std::string& name) {
  static const std::regex valid("[a-z0-9][a-z0-9+.-]+");
  if (!std::regex_match(name, valid))
    fail("--name '{}': not a Debian package name (lower case letters, digits, '+', '-' and '.', "
         "starting with a letter or digit, two characters at least)",
         printable(name));
}

std::string maintainer(const std::string& given) {
  if (!given.empty()) return given;
  const char* name = std::getenv("DEBFULLNAME");
  const char* mail = std::getenv("DEBEMAIL");
  if (name && *name && mail && *mail) return fmt::format("{} <{}>", name, mail);
  return "livesplice package <root@localhost>";
}

// One line of the long description per update: what it is and what it patches.
std::string describe(const update::Contents& u) {
  size_t replaced = 0;
  for (const auto& f : u.functions) replaced += f.replace ? 1 : 0;
  std::string targets;
  for (const auto& t : u.targets) targets += (targets.empty() ? "" : ", ") + t;
  std::string what = u.manifest.kernel ? "kernel " + u.kernel_release : targets;
  std::string label = u.manifest.label.empty() ? "" : fmt::format(" ({})", u.manifest.label);
  return fmt::format("{}{}: {}, {} function(s) replaced", u.id.substr(0, 16), label, what, replaced);
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out.flush()) fail("{}: cannot write: {}", path, std::strerror(errno));
}

// The version in a file name: without its epoch, as dpkg-name writes it.
std::string file_version(const std::string& version) {
  auto colon = version.find(':');
  return colon == std::string::npos ? version : version.substr(colon + 1);
}

}  // namespace

Exit run_package(Context& ctx, const PackageOptions& o) {
  check_name(o.name);
  if (o.version.empty()) fail("--version: empty");
  // Read and verified first: nothing is written for a set with a bad update in it.
  std::vector<update::Contents> updates;
  std::set<std::string> ids;
  for (const auto& path : o.updates) {
    updates.push_back(update::Contents::load(path));
    const auto& u = updates.back();
    if (!ids.insert(u.id).second) fail("{}: update {} is given twice", path, u.id.substr(0, 8));
    if (u.manifest.kernel)
      ctx.warn(fmt::format("{}: a kernel update: the update manager stores it but does not apply it yet", path));
  }

  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) fail("{}: cannot create: {}", o.out_dir, ec.message());
  Stage stage(o.out_dir);
  std::string store_dir = std::string(manager::kDefaultRoot) + "/updates";
  fs::create_directories(stage.root() + store_dir, ec);
  fs::create_directories(stage.root() + "/DEBIAN", ec);
  if (ec) fail("{}: cannot create: {}", stage.root(), ec.message());

  // Increasing modification times in command-line order, the last one now (or
  // SOURCE_DATE_EPOCH, which dpkg-deb clamps to): the store's order for updates dpkg
  // installed (deb.h).
  std::time_t last = std::time(nullptr);
  if (const char* sde = std::getenv("SOURCE_DATE_EPOCH"); sde && *sde) last = std::strtoll(sde, nullptr, 10);
  uintmax_t kib = 0;
  for (size_t i = 0; i < updates.size(); ++i) {
    const auto& image = updates[i].file.image();
    std::string path = stage.root() + store_dir + "/" + updates[i].id + ".lsu";
    write_file(path, std::string(reinterpret_cast<const char*>(image.data()), image.size()));
    ::chmod(path.c_str(), 0644);
    struct timespec times[2];
    times[0].tv_sec = times[1].tv_sec = last - static_cast<std::time_t>(updates.size() - 1 - i);
    times[0].tv_nsec = times[1].tv_nsec = 0;
    if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) fail("{}: cannot set its time: {}", path, std::strerror(errno));
    kib += (image.size() + 1023) / 1024;
  }
  for (std::string dir = stage.root() + store_dir; dir.size() > stage.root().size(); dir = fs::path(dir).parent_path())
    ::chmod(dir.c_str(), 0755);

  std::string description = fmt::format(
      "Description: live updates for livesplice ({} {})\n"
      " Installs these livesplice updates into the store ({}); livesplice's trigger\n"
      " applies them to every running process they fit, and undoes them when this\n"
      " package is removed.\n .\n",
      o.name, o.version, store_dir);
  for (const auto& u : updates) description += " " + describe(u) + "\n";
  write_file(stage.root() + "/DEBIAN/control",
             fmt::format("Package: {}\nVersion: {}\nArchitecture: amd64\nMaintainer: {}\nInstalled-Size: {}\n"
                         "Depends: livesplice\nSection: admin\nPriority: optional\n{}",
                         o.name, o.version, maintainer(o.maintainer), kib + 4, description));
  ::chmod((stage.root() + "/DEBIAN").c_str(), 0755);

  std::string deb = fmt::format("{}/{}_{}_amd64.deb", o.out_dir, o.name, file_version(o.version));
  RunResult r = run({"dpkg-deb", "--root-owner-group", "-Zxz", "--build", stage.root(), deb});
  if (r.status != 0) fail("dpkg-deb could not build {} (exit {}):\n{}", deb, r.status, r.output);
  fmt::print("wrote {} ({} update(s))\n", deb, updates.size());
  for (const auto& u : updates) ctx.note(describe(u));
  return Exit::Ok;
}

}  // namespace ls::package
