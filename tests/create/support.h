// Helpers for the create tests (on tests/support: temporary trees, running the real
// binaries): a hash + stat picture of a whole tree to prove create left it as found.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/support.h"

namespace lstest {

using Result = RunResult;

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
