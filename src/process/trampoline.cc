#include "process/trampoline.h"

#include <sys/uio.h>

#include <algorithm>
#include <cstring>

#include "process/jump.h"

namespace ls::proc {

namespace {

constexpr uint8_t kEndbr64[] = {0xf3, 0x0f, 0x1e, 0xfa};

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
  t.jump = jump_bytes(t.site, to);
  uint64_t need = static_cast<uint64_t>(t.site - entry) + t.jump.size();
  if (need > size)
    return error("{} at {}: only {} bytes long, a {}-byte jump does not fit", label, entry, size, t.jump.size());
  t.original.resize(t.jump.size());
  LS_TRY(mem.read(t.site, t.original));
  return t;
}


namespace {

// Sites in one page, written with one pwrite: inside the pause each write is a system
// call (a few µs on a virtual machine), and replaced functions of one file usually sit
// close together. A page never straddles two mappings, so a span within one cannot
// reach memory of another kind (a shared region of ours, a hole).
struct Span {
  TargetAddr start, end;
  std::vector<size_t> sites;        // indices into the trampolines
  std::vector<uint8_t> bytes;       // [start, end) as it is, then with the sites' new bytes
};

std::vector<Span> spans_of(const std::vector<Trampoline>& ts) {
  std::vector<size_t> order(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ts[a].site < ts[b].site; });
  auto page = [](TargetAddr a) { return a.value() >> 12; };
  std::vector<Span> spans;
  for (size_t i : order) {
    TargetAddr end = ts[i].site + static_cast<int64_t>(ts[i].jump.size());
    bool one_page = page(ts[i].site) == page(end - 1);
    if (!spans.empty() && one_page && page(spans.back().start) == page(ts[i].site) &&
        page(spans.back().end - 1) == page(ts[i].site)) {
      spans.back().end = std::max(spans.back().end, end);
      spans.back().sites.push_back(i);
    } else {
      spans.push_back({ts[i].site, end, {i}, {}});
    }
  }
  return spans;
}

// Writes `pick(t)` at every site, after checking that each holds `expect(t)`: every
// span is read (all in one system call), checked, overlaid and written whole. All or
// none: a site that holds something else fails before anything is written, and on a
// failed write the spans written get `undo(t)` back.
template <typename Expect, typename Pick, typename Undo>
Status write_sites(const Memory& mem, const std::vector<Trampoline>& ts, Expect expect, Pick pick, Undo undo) {
  // Every span is sized by the jumps: bytes of any other length (a ledger that says
  // so) would be compared or copied past its end.
  for (const auto& t : ts)
    if (expect(t).size() != t.jump.size() || pick(t).size() != t.jump.size() || undo(t).size() != t.jump.size())
      return error("{} at {}: the recorded bytes ({}, {}) differ in length from the {}-byte jump; not touching it",
                   t.function, t.site, expect(t).size(), pick(t).size(), t.jump.size());
  std::vector<Span> spans = spans_of(ts);
  std::vector<iovec> local, remote;
  size_t total = 0;
  for (auto& sp : spans) {
    sp.bytes.resize(sp.end - sp.start);
    local.push_back({sp.bytes.data(), sp.bytes.size()});
    remote.push_back({reinterpret_cast<void*>(sp.start.value()), sp.bytes.size()});
    total += sp.bytes.size();
  }
  bool all = process_vm_readv(mem.pid(), local.data(), local.size(), remote.data(), remote.size(), 0) ==
             static_cast<ssize_t>(total);
  for (auto& sp : spans) {
    if (!all) LS_TRY(mem.read(sp.start, sp.bytes));   // e.g. more spans than IOV_MAX
    for (size_t i : sp.sites) {
      const auto& want = expect(ts[i]);
      if (!std::equal(want.begin(), want.end(), sp.bytes.begin() + (ts[i].site - sp.start)))
        return error("{} at {}: the bytes there are not the ones livesplice expects; not touching it",
                     ts[i].function, ts[i].site);
    }
  }
  for (auto& sp : spans)
    for (size_t i : sp.sites) {
      const auto& b = pick(ts[i]);
      std::copy(b.begin(), b.end(), sp.bytes.begin() + (ts[i].site - sp.start));
    }
  for (size_t k = 0; k < spans.size(); ++k) {
    Status s = mem.write(spans[k].start, spans[k].bytes);
    if (s.ok()) continue;
    for (size_t j = 0; j < k; ++j)
      for (size_t i : spans[j].sites) (void)mem.write(ts[i].site, undo(ts[i]));
    return std::move(s).context(ts[spans[k].sites[0]].function);
  }
  return {};
}

}  // namespace

Status privatize_sites(const Memory& mem, const std::vector<Trampoline>& trampolines) {
  // Through the splice's own code (write_sites), spans and all: run here first, the
  // pause then finds its code, heap and pages already touched by this process.
  std::vector<Trampoline> now = trampolines;
  for (auto& t : now) LS_TRY(mem.read(t.site, t.jump));
  auto same = [](const Trampoline& t) -> const std::vector<uint8_t>& { return t.jump; };
  return write_sites(mem, now, same, same, same);
}

Status write_trampolines(const Memory& mem, const std::vector<Trampoline>& trampolines) {
  auto jump = [](const Trampoline& t) -> const std::vector<uint8_t>& { return t.jump; };
  auto original = [](const Trampoline& t) -> const std::vector<uint8_t>& { return t.original; };
  return write_sites(mem, trampolines, original, jump, original);
}

Status remove_trampolines(const Memory& mem, const std::vector<Trampoline>& trampolines) {
  auto jump = [](const Trampoline& t) -> const std::vector<uint8_t>& { return t.jump; };
  auto original = [](const Trampoline& t) -> const std::vector<uint8_t>& { return t.original; };
  return write_sites(mem, trampolines, jump, original, jump);
}

}  // namespace ls::proc
