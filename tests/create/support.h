// Helpers for the create tests: temporary trees written from strings, running the real
// binaries, and a hash + stat picture of a whole tree to prove create left it as found.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lstest {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& content, bool executable = false);
std::string read_file(const std::string& path);

struct Result {
  int status = -1;          // exit status; 128+N when killed by signal N
  std::string out;          // stdout
  std::string err;          // stderr
};
// Runs argv (argv[0] looked up in PATH) in cwd with extra environment, waiting for it.
Result run(const std::vector<std::string>& argv, const std::string& cwd = {},
           const std::map<std::string, std::string>& env = {});
Result sh(const std::string& command, const std::string& cwd = {});

// Fails the current test (never skips) when a tool the test needs is missing.
void require_tools(const std::vector<std::string>& tools);

// Paths of the binaries under test, from compile definitions.
std::string livesplice();
std::string livesplice_cc();

// Every entry under a root: type, size, mtime (ns), mode, and a hash of the content.
struct Entry {
  char type = 'f';
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  unsigned mode = 0;
  uint64_t hash = 0;
  std::string link;
  bool operator==(const Entry&) const = default;
};
using Picture = std::map<std::string, Entry>;
// A root that does not exist gives an empty picture.
Picture picture(const std::string& root);
// Empty when equal; otherwise one line per difference, for the failure message.
std::string compare(const Picture& before, const Picture& after);

// The GNU build-id printed by `readelf -n` for a linked binary ("" if none).
std::string readelf_build_id(const std::string& binary);

}  // namespace lstest
