// C++ names as people read them: the Itanium ABI's mangled symbol names demangled by the
// C++ runtime (abi::__cxa_demangle), for messages and for the perf map.
#pragma once

#include <string>
#include <string_view>

namespace ls {

// "Square::area() const" for "_ZNK6Square4areaEv"; the name itself for anything that is
// not a mangled C++ name (C functions, a malformed or truncated name). A suffix GCC adds
// to a clone (".cold", ".isra.0") is kept, demangled with it.
std::string demangled(std::string_view name);
// For messages: "_ZNK6Square4areaEv (Square::area() const)", or the name alone when it
// demangles to itself. Callers label with "object.o:name" keep the object.
std::string with_demangled(std::string_view name);

}  // namespace ls
