// abi::__cxa_demangle behind a value interface (demangle.h).
#include "base/demangle.h"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

namespace ls {

std::string demangled(std::string_view name) {
  if (!name.starts_with("_Z")) return std::string(name);
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(
      abi::__cxa_demangle(std::string(name).c_str(), nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

std::string with_demangled(std::string_view name) {
  const size_t colon = name.rfind(':');
  const std::string_view symbol = colon == std::string_view::npos ? name : name.substr(colon + 1);
  std::string readable = demangled(symbol);
  if (readable == symbol) return std::string(name);
  return std::string(name) + " (" + readable + ")";
}

}  // namespace ls
