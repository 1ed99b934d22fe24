// Helpers for the loader tests (on tests/support: temporary directories, running tools):
// assembling hand-written update-like objects, and mapping memory at a chosen distance.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "elf/object.h"
#include "loader/link.h"
#include "support/support.h"

namespace lstest {

using Run = RunResult;

// Assembles x86-64 `source` with gcc into `dir`/name.o and loads it. Sections meant to
// be loaded are named `.livesplice.post.*` as in a real update.
ls::elf::Object assemble(const TempDir& dir, const std::string& name, const std::string& source);

// A resolver answering from a table (name -> view -> value) and remembering what it
// was asked, so tests can check that a symbol was never looked up.
class TableResolver : public ls::load::SymbolResolver {
 public:
  explicit TableResolver(const ls::elf::Object& update) : update_(update) {}
  void set(const std::string& name, ls::View view, uint64_t value) { table_[name][view] = value; }
  ls::Result<ls::TargetAddr> resolve(uint32_t symbol, ls::View view) const override;
  bool asked(const std::string& name) const;

 private:
  const ls::elf::Object& update_;
  std::map<std::string, std::map<ls::View, uint64_t>> table_;
  mutable std::vector<std::string> asked_;
};

// An anonymous read+write mapping of `size` bytes at the first free page-aligned
// address found walking from `hint` by `step` (either sign); unmapped on destruction.
class Mapping {
 public:
  Mapping(uint64_t hint, int64_t step, uint64_t size);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  bool ok() const { return addr_ != nullptr; }
  uint64_t address() const { return reinterpret_cast<uint64_t>(addr_); }
  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  // Copies the image in and applies the protections the loader asks for: code
  // read+exec, read-only data read, writable data read+write.
  void install(const ls::load::Image& image) const;

 private:
  void* addr_ = nullptr;
  uint64_t size_ = 0;
};

// Little-endian reads from image bytes.
uint32_t get32(const std::vector<uint8_t>& b, uint64_t off);
uint64_t get64(const std::vector<uint8_t>& b, uint64_t off);

}  // namespace lstest
