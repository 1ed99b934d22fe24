// Choosing the Target, and what every architecture shares.
#include "arch/target.h"

#include "arch/x86_64/target.h"
#include "base/diag.h"

namespace ls::arch {

namespace {

constexpr std::string_view kNoArm64 =
    "arm64 is not supported yet: livesplice has no arm64 target (src/arch/ holds one folder per machine)";

const Target* find(elf::Machine m) {
  switch (m) {
    case elf::Machine::X86_64: return &x86_64::target();
    case elf::Machine::AArch64: return nullptr;
  }
  return nullptr;
}

}  // namespace

const Target& target(elf::Machine m) {
  if (const Target* t = find(m)) return *t;
  fail("{}", kNoArm64);
}

Result<const Target*> checked_target(elf::Machine m) {
  if (const Target* t = find(m)) return t;
  return error("{}", kNoArm64);
}

const Target& host() {
#if defined(__x86_64__)
  return target(elf::Machine::X86_64);
#elif defined(__aarch64__)
  return target(elf::Machine::AArch64);
#else
#error "livesplice runs on x86-64 (and, once src/arch/arm64/ exists, arm64) only"
#endif
}

std::string_view to_string(Reveal r) {
  switch (r) {
    case Reveal::Address: return "address";
    case Reveal::GotSlot: return "GOT slot";
    case Reveal::TlsOffset: return "TLS offset";
    case Reveal::TlsGotSlot: return "TLS GOT slot";
    case Reveal::TlsGdPair: return "TLS GD pair";
    case Reveal::TlsModule: return "TLS module GOT pair";
    case Reveal::DtpOffset: return "offset in the module's TLS block";
  }
  return "?";
}

const std::vector<RunForm>* Rewrites::forms_for(std::string_view symbol) const {
  if (by_symbol.empty()) return nullptr;
  if (auto it = by_symbol.find(std::string(symbol)); it != by_symbol.end()) return &it->second;
  for (const auto& [key, forms] : by_symbol)
    if (key.ends_with('*') && symbol.starts_with(std::string_view(key).substr(0, key.size() - 1))) return &forms;
  return nullptr;
}

}  // namespace ls::arch
