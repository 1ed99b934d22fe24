#include "process/trampoline.h"

#include <sys/uio.h>

#include <algorithm>
#include <cstring>

#include "arch/target.h"

namespace ls::proc {

Result<Trampoline> make_trampoline(const Memory& mem, const std::string& label, TargetAddr entry, uint64_t size,
                                   TargetAddr to) {
  Trampoline t;
  t.function = label;
  t.function_at = entry;
  t.new_code = to;
  t.size = size;
  const arch::Target& arch = arch::host();
  std::vector<uint8_t> head(arch.entry_head_size);
  LS_TRY(mem.read(entry, head));
  t.site = entry + static_cast<int64_t>(arch.entry_landing(head));
  t.jump = arch.jump(t.site, to);
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
  std::vector<size_t> sites;        // indices into the edits
  std::vector<uint8_t> bytes;       // [start, end) as it is, then with the sites' new bytes
  std::vector<uint8_t> before;      // [start, end) as it was
};

std::vector<Span> spans_of(const std::vector<SiteEdit>& es) {
  std::vector<size_t> order(es.size());
  for (size_t i = 0; i < es.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return es[a].at < es[b].at; });
  auto page = [](TargetAddr a) { return a.value() >> 12; };
  std::vector<Span> spans;
  for (size_t i : order) {
    TargetAddr end = es[i].at + static_cast<int64_t>(es[i].to.size());
    bool one_page = page(es[i].at) == page(end - 1);
    if (!spans.empty() && one_page && page(spans.back().start) == page(es[i].at) &&
        page(spans.back().end - 1) == page(es[i].at)) {
      spans.back().end = std::max(spans.back().end, end);
      spans.back().sites.push_back(i);
    } else {
      spans.push_back({es[i].at, end, {i}, {}, {}});
    }
  }
  return spans;
}

// Rewrites every site: each span is read (all in one system call), each site in it
// checked with `holds(edit, its bytes)`, changed with `change(edit, its bytes)`, and the
// span written whole. All or none: a site that fails its check fails before anything is
// written, and on a failed write the spans written get their old bytes back.
template <typename Holds, typename Change>
Status write_sites(const Memory& mem, const std::vector<SiteEdit>& es, Holds holds, Change change) {
  // Every span is sized by the new bytes: old bytes of any other length (a ledger that
  // says so) would be compared or copied past its end.
  for (const auto& e : es)
    if (e.to.empty() || e.from.size() != e.to.size())
      return error("{} at {}: the recorded bytes ({}, {}) differ in length; not touching it", e.function, e.at,
                   e.from.size(), e.to.size());
  std::vector<Span> spans = spans_of(es);
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
  auto site_bytes = [](Span& sp, const SiteEdit& e) {
    return std::span<uint8_t>(sp.bytes).subspan(e.at - sp.start, e.to.size());
  };
  for (auto& sp : spans) {
    if (!all) LS_TRY(mem.read(sp.start, sp.bytes));   // e.g. more spans than IOV_MAX
    for (size_t i : sp.sites)
      if (!holds(es[i], std::span<const uint8_t>(site_bytes(sp, es[i]))))
        return error("{} at {}: the bytes there are not the ones livesplice expects; not touching it",
                     es[i].function, es[i].at);
  }
  for (auto& sp : spans) {
    sp.before = sp.bytes;
    for (size_t i : sp.sites) change(es[i], site_bytes(sp, es[i]));
  }
  for (size_t k = 0; k < spans.size(); ++k) {
    Status s = mem.write(spans[k].start, spans[k].bytes);
    if (s.ok()) continue;
    for (size_t j = 0; j < k; ++j) (void)mem.write(spans[j].start, spans[j].before);
    return std::move(s).context(es[spans[k].sites[0]].function);
  }
  return {};
}

bool same(std::span<const uint8_t> a, const std::vector<uint8_t>& b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

// An armed site: the trap (int3), then `tail`'s bytes after its first.
bool armed_with(std::span<const uint8_t> site, const std::vector<uint8_t>& tail) {
  return site[0] == arch::host().trap && std::equal(site.begin() + 1, site.end(), tail.begin() + 1, tail.end());
}

}  // namespace

Status privatize_sites(const Memory& mem, const std::vector<Trampoline>& trampolines) {
  // Through the splice's own code (write_sites), spans and all: run here first, the
  // pause then finds its code, heap and pages already touched by this process.
  std::vector<SiteEdit> now = insertions(trampolines);
  for (auto& e : now) LS_TRY(mem.read(e.at, e.to));
  return write_sites(mem, now, [](const SiteEdit& e, auto b) { return same(b, e.to); }, [](const SiteEdit&, auto) {});
}

std::vector<SiteEdit> insertions(const std::vector<Trampoline>& trampolines) {
  std::vector<SiteEdit> out;
  for (const auto& t : trampolines) out.push_back({t.function, t.site, t.original, t.jump});
  return out;
}

std::vector<SiteEdit> removals(const std::vector<Trampoline>& trampolines) {
  std::vector<SiteEdit> out;
  for (const auto& t : trampolines) out.push_back({t.function, t.site, t.jump, t.original});
  return out;
}

std::vector<TargetRange> SiteWriter::sites() const {
  std::vector<TargetRange> out;
  for (const auto& e : edits_) out.push_back({e.at, e.at + static_cast<int64_t>(e.to.size())});
  return out;
}

Status SiteWriter::arm() {
  LS_TRY(write_sites(mem_, edits_, [](const SiteEdit& e, auto b) { return same(b, e.from); },
                     [](const SiteEdit&, auto b) { b[0] = arch::host().trap; }));
  stage_ = Stage::Armed;
  return {};
}

Status SiteWriter::finish() {
  LS_TRY(write_sites(mem_, edits_, [](const SiteEdit& e, auto b) { return armed_with(b, e.from); },
                     [](const SiteEdit& e, auto b) { std::copy(e.to.begin() + 1, e.to.end(), b.begin() + 1); }));
  stage_ = Stage::Tails;
  LS_TRY(write_sites(mem_, edits_, [](const SiteEdit& e, auto b) { return armed_with(b, e.to); },
                     [](const SiteEdit& e, auto b) { b[0] = e.to[0]; }));
  stage_ = Stage::Done;
  return {};
}

void SiteWriter::back_out() {
  auto anything = [](const SiteEdit&, auto) { return true; };
  if (stage_ == Stage::Tails)
    (void)write_sites(mem_, edits_, anything,
                      [](const SiteEdit& e, auto b) { std::copy(e.from.begin() + 1, e.from.end(), b.begin() + 1); });
  if (stage_ == Stage::Armed || stage_ == Stage::Tails)
    (void)write_sites(mem_, edits_, anything, [](const SiteEdit& e, auto b) { b[0] = e.from[0]; });
  stage_ = Stage::Untouched;
}

}  // namespace ls::proc
