#include "support.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace fs = std::filesystem;

namespace lstest {

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

void scan(const std::string& root, const std::string& path, Picture& out) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  Entry e;
  e.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  e.mode = st.st_mode & 07777;
  if (S_ISDIR(st.st_mode)) {
    e.type = 'd';
  } else if (S_ISLNK(st.st_mode)) {
    e.type = 'l';
    e.link = fs::read_symlink(path).string();
  } else {
    e.type = 'f';
    e.size = static_cast<uint64_t>(st.st_size);
    e.hash = fnv1a(read_file(path));
  }
  out[path == root ? "." : path.substr(root.size() + 1)] = e;
  if (e.type == 'd') {
    for (const auto& child : fs::directory_iterator(path)) scan(root, child.path().string(), out);
  }
}

std::string describe(const Entry& e) {
  std::ostringstream s;
  s << e.type << " size=" << e.size << " mtime=" << e.mtime_ns << " mode=" << std::oct << e.mode << std::dec
    << " hash=" << std::hex << e.hash;
  return s.str();
}

}  // namespace

Picture picture(const std::string& root) {
  Picture p;
  if (fs::exists(root)) scan(root, root, p);
  return p;
}

std::string compare(const Picture& before, const Picture& after) {
  std::string out;
  for (const auto& [path, e] : before) {
    auto it = after.find(path);
    if (it == after.end()) out += "  removed: " + path + "\n";
    else if (!(it->second == e))
      out += "  changed: " + path + "\n      before " + describe(e) + "\n      after  " + describe(it->second) + "\n";
  }
  for (const auto& [path, e] : after)
    if (!before.count(path)) out += "  created: " + path + "\n";
  return out;
}

std::string readelf_build_id(const std::string& binary) {
  Result r = run({"readelf", "-n", binary});
  std::smatch m;
  static const std::regex kId(R"(Build ID: ([0-9a-f]+))");
  if (std::regex_search(r.out, m, kId)) return m[1];
  return {};
}

}  // namespace lstest
