#include "process/ledger.h"

#include "process/ptrace.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace ls::proc {

namespace {

constexpr char kMagic[] = "LIVESPLICE-LEDGER 1\n";
constexpr size_t kMagicLen = sizeof(kMagic) - 1;

std::string hex(const std::vector<uint8_t>& b) {
  std::string s;
  for (uint8_t c : b) s += fmt::format("{:02x}", c);
  return s;
}

std::vector<uint8_t> unhex(const std::string& s) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < s.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoul(s.substr(i, 2), nullptr, 16)));
  return out;
}

nlohmann::json entry_json(const LedgerEntry& e, bool with_patch) {
  nlohmann::json t = nlohmann::json::array();
  for (const auto& x : e.trampolines)
    t.push_back({{"function", x.function}, {"function_at", x.function_at.value()}, {"site", x.site.value()},
                 {"original", hex(x.original)}, {"jump", hex(x.jump)}, {"new_code", x.new_code.value()},
                 {"size", x.size}});
  nlohmann::json r = nlohmann::json::array();
  for (const auto& x : e.regions) r.push_back({{"start", x.range.start.value()}, {"end", x.range.end.value()}, {"name", x.name}});
  nlohmann::json j{{"id", e.id},       {"update", e.update_path}, {"applied_at", e.applied_at},
                   {"pause_us", e.pause_us}, {"pending", e.pending}, {"functions", e.functions}, {"new_functions", e.new_functions},
                   {"trampolines", t}, {"regions", r},         {"patch_name", e.patch_name}};
  if (with_patch) j["patch"] = e.patch_text;
  return j;
}

LedgerEntry entry_from_json(const nlohmann::json& j) {
  LedgerEntry e;
  e.id = j.at("id");
  e.update_path = j.value("update", "");
  e.applied_at = j.value("applied_at", "");
  e.pause_us = j.value("pause_us", 0.0);
  e.pending = j.value("pending", false);
  e.functions = j.value("functions", std::vector<std::string>{});
  e.new_functions = j.value("new_functions", std::vector<std::string>{});
  e.patch_name = j.value("patch_name", "");
  e.patch_text = j.value("patch", "");
  for (const auto& x : j.at("trampolines"))
    e.trampolines.push_back(Trampoline{x.at("function"), TargetAddr(x.at("function_at").get<uint64_t>()),
                                       TargetAddr(x.at("site").get<uint64_t>()), unhex(x.at("original")),
                                       unhex(x.at("jump")), TargetAddr(x.at("new_code").get<uint64_t>()),
                                       x.value("size", uint64_t{0})});
  for (const auto& x : j.at("regions"))
    e.regions.push_back(Region{{TargetAddr(x.at("start").get<uint64_t>()), TargetAddr(x.at("end").get<uint64_t>())},
                               x.at("name")});
  return e;
}

}  // namespace

namespace {

// The ledger's mapping: the memfd named so, or (mapped the anonymous way, regions.h) an
// anonymous read-only private mapping of the ledger's size that starts with the magic.
bool is_ledger(const Memory& mem, const Mapping& m) {
  if (m.path.find(std::string("/memfd:") + kLedgerName) == 0) return true;
  if (!m.path.empty() || m.inode != 0 || !m.read || m.write || m.exec || m.shared || m.range.size() != kLedgerSize)
    return false;
  char magic[kMagicLen];
  return mem.read(m.range.start, std::span(reinterpret_cast<uint8_t*>(magic), kMagicLen)).ok() &&
         std::memcmp(magic, kMagic, kMagicLen) == 0;
}

}  // namespace

Result<Ledger> Ledger::read(pid_t pid, const std::vector<Mapping>& maps) {
  Ledger l;
  auto mem = Memory::open(pid);
  if (!mem) return mem.status();
  for (const auto& m : maps) {
    if (!is_ledger(*mem, m)) continue;
    l.region_ = m.range;
    std::string buf(m.range.size(), '\0');
    if (!mem->read(m.range.start, std::span(reinterpret_cast<uint8_t*>(buf.data()), buf.size())).ok())
      return error("process {}: ledger unreadable", pid);
    // A ledger mapped but never written (the tool died right after creating it) is empty.
    if (std::all_of(buf.begin(), buf.begin() + kMagicLen, [](char c) { return c == 0; })) return l;
    if (std::memcmp(buf.data(), kMagic, kMagicLen) != 0) return error("process {}: ledger has an unknown format", pid);
    uint64_t len = 0;
    std::memcpy(&len, buf.data() + kMagicLen, 8);
    if (len == 0) return l;
    if (len > buf.size() - kMagicLen - 8) return error("process {}: ledger is corrupt (length {})", pid, len);
    try {
      auto j = nlohmann::json::parse(buf.substr(kMagicLen + 8, len));
      for (const auto& e : j.at("updates")) l.entries_.push_back(entry_from_json(e));
    } catch (const std::exception& e) {
      return error("process {}: ledger is corrupt: {}", pid, e.what());
    }
    return l;
  }
  return l;
}

const LedgerEntry* Ledger::find(const std::string& id_prefix) const {
  const LedgerEntry* hit = nullptr;
  for (const auto& e : entries_)
    if (e.id.rfind(id_prefix, 0) == 0) {
      if (hit) return nullptr;   // ambiguous prefix
      hit = &e;
    }
  return hit;
}

const Trampoline* Ledger::active_at(TargetAddr site) const {
  const Trampoline* last = nullptr;
  for (const auto& e : entries_)
    for (const auto& t : e.trampolines)
      if (t.site == site) last = &t;
  return last;
}

Status Ledger::write(pid_t pid) const {
  if (!region_) return error("process {}: no ledger region", pid);
  nlohmann::json j;
  j["updates"] = nlohmann::json::array();
  for (const auto& e : entries_) j["updates"].push_back(entry_json(e, true));
  std::string body = j.dump();
  if (kMagicLen + 8 + body.size() > region_->size())
    return error("process {}: ledger full ({} bytes needed)", pid, body.size());
  std::string out(kMagic, kMagicLen);
  uint64_t len = body.size();
  out.append(reinterpret_cast<const char*>(&len), 8);
  out += body;
  // Through the memfd, or through /proc/PID/mem for the anonymous way.
  std::span bytes(reinterpret_cast<const uint8_t*>(out.data()), out.size());
  int fd = ::open(fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, region_->start.value(), region_->end.value()).c_str(),
                  O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    auto mem = Memory::open(pid);
    if (!mem) return mem.status();
    return mem->write(region_->start, bytes).context(fmt::format("process {}: cannot write its ledger", pid));
  }
  ssize_t n = ::pwrite(fd, out.data(), out.size(), 0);
  ::close(fd);
  if (n != static_cast<ssize_t>(out.size())) return error("process {}: cannot write its ledger", pid);
  return {};
}

nlohmann::json Ledger::to_json(bool with_patch) const {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& e : entries_) j.push_back(entry_json(e, with_patch));
  return j;
}

}  // namespace ls::proc
