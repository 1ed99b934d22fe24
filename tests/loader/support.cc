#include "support.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <gtest/gtest.h>

namespace lstest {

ls::elf::Object assemble(const TempDir& dir, const std::string& name, const std::string& source) {
  std::string s = dir / (name + ".s"), o = dir / (name + ".o");
  write_file(s, source);
  Run r = run({"gcc", "-c", "-o", o, s});
  if (r.status != 0) throw std::runtime_error("assembling " + name + " failed:\n" + r.output());
  return ls::elf::Object::load(o);
}

ls::Result<ls::TargetAddr> TableResolver::resolve(uint32_t symbol, ls::View view) const {
  const std::string& name = update_.symbol(symbol).name;
  asked_.push_back(name);
  auto t = table_.find(name);
  if (t != table_.end())
    if (auto v = t->second.find(view); v != t->second.end()) return ls::TargetAddr(v->second);
  return ls::error("test table has no {} for '{}'", ls::to_string(view), name);
}

bool TableResolver::asked(const std::string& name) const {
  return std::find(asked_.begin(), asked_.end(), name) != asked_.end();
}

Mapping::Mapping(uint64_t hint, int64_t step, uint64_t size) : size_(size) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  hint &= ~(page - 1);
  for (int i = 0; i < 4096; ++i, hint += static_cast<uint64_t>(step)) {
    void* p = mmap(reinterpret_cast<void*>(hint), size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) continue;
    if (p != reinterpret_cast<void*>(hint)) {   // kernels before 4.17 treat the flag as a hint
      munmap(p, size);
      continue;
    }
    addr_ = p;
    return;
  }
}

Mapping::~Mapping() {
  if (addr_) munmap(addr_, size_);
}

void Mapping::install(const ls::load::Image& image) const {
  if (image.base.value() != address() || image.bytes.size() > size_) throw std::runtime_error("image does not fit the mapping");
  std::memcpy(addr_, image.bytes.data(), image.bytes.size());
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  auto up = [&](uint64_t v) { return (v + page - 1) & ~(page - 1); };
  uint64_t base = address();
  uint64_t code_end = up(image.code.end.value());
  uint64_t ro_end = std::max(code_end, up(image.readonly.end.value()));
  auto protect = [&](uint64_t from, uint64_t to, int prot) {
    if (to > from && mprotect(reinterpret_cast<void*>(from), to - from, prot) != 0)
      throw std::runtime_error(std::string("mprotect: ") + strerror(errno));
  };
  protect(base, code_end, PROT_READ | PROT_EXEC);
  protect(code_end, ro_end, PROT_READ);
  if (image.writable.size() && image.writable.start.value() < ro_end)
    throw std::runtime_error("writable data shares a page with code or read-only data");
}

uint32_t get32(const std::vector<uint8_t>& b, uint64_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}

uint64_t get64(const std::vector<uint8_t>& b, uint64_t off) {
  uint64_t v;
  std::memcpy(&v, b.data() + off, 8);
  return v;
}

}  // namespace lstest
