#include "process/trampoline.h"

#include <sys/uio.h>

#include <cstring>

namespace ls::proc {

namespace {

constexpr uint8_t kEndbr64[] = {0xf3, 0x0f, 0x1e, 0xfa};

std::vector<uint8_t> jmp_rel32(int32_t rel) {
  std::vector<uint8_t> b{0xe9, 0, 0, 0, 0};   // jmp rel32
  std::memcpy(&b[1], &rel, 4);
  return b;
}

std::vector<uint8_t> jmp_abs64(uint64_t to) {
  std::vector<uint8_t> b{0xff, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};   // jmp *0(%rip); .quad to
  std::memcpy(&b[6], &to, 8);
  return b;
}

}  // namespace

Result<Trampoline> make_trampoline(const Memory& mem, const std::string& label, TargetAddr entry, uint64_t size,
                                   TargetAddr to) {
  Trampoline t;
  t.function = label;
  t.function_at = entry;
  t.new_code = to;
  t.size = size;
  uint8_t head[4];
  LS_TRY(mem.read(entry, head));
  t.site = std::memcmp(head, kEndbr64, 4) == 0 ? entry + 4 : entry;
  int64_t rel = to - (t.site + 5);
  if (rel >= INT32_MIN && rel <= INT32_MAX) t.jump = jmp_rel32(static_cast<int32_t>(rel));
  else t.jump = jmp_abs64(to.value());
  uint64_t need = static_cast<uint64_t>(t.site - entry) + t.jump.size();
  if (need > size)
    return error("{} at {}: only {} bytes long, a {}-byte jump does not fit", label, entry, size, t.jump.size());
  t.original.resize(t.jump.size());
  LS_TRY(mem.read(t.site, t.original));
  return t;
}

Status privatize_sites(const Memory& mem, const std::vector<Trampoline>& trampolines) {
  for (const auto& t : trampolines) {
    std::vector<uint8_t> now(t.jump.size());
    LS_TRY(mem.read(t.site, now));
    LS_TRY(std::move(mem.write(t.site, now)).context(t.function));
  }
  return {};
}

Status write_trampolines(const Memory& mem, const std::vector<Trampoline>& trampolines) {
  for (size_t i = 0; i < trampolines.size(); ++i) {
    Status s = mem.write(trampolines[i].site, trampolines[i].jump);
    if (!s.ok()) {
      for (size_t k = 0; k < i; ++k) (void)mem.write(trampolines[k].site, trampolines[k].original);
      return std::move(s).context(trampolines[i].function);
    }
  }
  return {};
}

Status remove_trampolines(const Memory& mem, const std::vector<Trampoline>& trampolines) {
  // Every site read in one system call: this runs inside the pause.
  std::vector<std::vector<uint8_t>> now(trampolines.size());
  std::vector<iovec> local, remote;
  for (size_t i = 0; i < trampolines.size(); ++i) {
    now[i].resize(trampolines[i].jump.size());
    local.push_back({now[i].data(), now[i].size()});
    remote.push_back({reinterpret_cast<void*>(trampolines[i].site.value()), now[i].size()});
  }
  size_t total = 0;
  for (const auto& v : local) total += v.iov_len;
  bool all = process_vm_readv(mem.pid(), local.data(), local.size(), remote.data(), remote.size(), 0) ==
             static_cast<ssize_t>(total);
  for (size_t i = 0; i < trampolines.size(); ++i) {
    const auto& t = trampolines[i];
    if (!all) LS_TRY(mem.read(t.site, now[i]));   // e.g. more sites than IOV_MAX
    if (now[i] != t.jump)
      return error("{} at {}: the jump livesplice wrote is no longer there; not touching it", t.function, t.site);
  }
  for (size_t i = 0; i < trampolines.size(); ++i) {
    Status s = mem.write(trampolines[i].site, trampolines[i].original);
    if (!s.ok()) {
      for (size_t k = 0; k < i; ++k) (void)mem.write(trampolines[k].site, trampolines[k].jump);
      return std::move(s).context(trampolines[i].function);
    }
  }
  return {};
}

}  // namespace ls::proc
