#include "process/ledger.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "arch/target.h"
#include "process/ptrace.h"

namespace ls::proc {

namespace {

constexpr char kMagic[] = "LIVESPLICE-LEDGER 2\n";
constexpr size_t kMagicLen = sizeof(kMagic) - 1;
// Bounds on what an entry may hold; far above what any real update needs.
constexpr size_t kMaxItems = 4096;          // trampolines, functions
constexpr size_t kMaxRegions = 8;
constexpr size_t kMaxString = 4096;         // ids, names, paths
constexpr uint64_t kMaxCode = 1ull << 30;   // a region, a replaced function
constexpr uint64_t kUserTop = 0x800000000000ull;
constexpr int kMaxDepth = 6;                // JSON nesting the format has
// A record holds the text twice (current and previous), JSON-escaped.
constexpr off_t kMaxRecord = 16 * kLedgerSize;

std::string hex(const std::vector<uint8_t>& b) {
  std::string s;
  for (uint8_t c : b) s += fmt::format("{:02x}", c);
  return s;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::vector<uint8_t> unhex(const std::string& s) {
  if (s.size() % 2 || s.size() > 2 * arch::host().max_jump_size) throw std::runtime_error("bad byte string '" + s.substr(0, 32) + "'");
  std::vector<uint8_t> out;
  for (size_t i = 0; i < s.size(); i += 2) {
    int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
    if (hi < 0 || lo < 0) throw std::runtime_error("bad byte string '" + s.substr(0, 32) + "'");
    out.push_back(static_cast<uint8_t>(hi << 4 | lo));
  }
  return out;
}

// Strict field access: a missing field or one of another type is an error, never a
// conversion (a float read as an address, a negative number as a size).
const nlohmann::json& field(const nlohmann::json& j, const char* name) {
  if (!j.is_object() || !j.contains(name)) throw std::runtime_error(std::string("missing '") + name + "'");
  return j.at(name);
}
uint64_t u64(const nlohmann::json& j, const char* name) {
  const auto& v = field(j, name);
  if (!v.is_number_unsigned()) throw std::runtime_error(std::string("'") + name + "' is not an unsigned integer");
  return v.get<uint64_t>();
}
std::string str(const nlohmann::json& j, const char* name, size_t max = kMaxString) {
  const auto& v = field(j, name);
  if (!v.is_string()) throw std::runtime_error(std::string("'") + name + "' is not a string");
  if (v.get_ref<const std::string&>().size() > max) throw std::runtime_error(std::string("'") + name + "' too long");
  return v.get<std::string>();
}
const nlohmann::json& array(const nlohmann::json& j, const char* name, size_t max) {
  const auto& v = field(j, name);
  if (!v.is_array() || v.size() > max) throw std::runtime_error(std::string("'") + name + "' is not a short array");
  return v;
}
std::vector<std::string> strings(const nlohmann::json& j, const char* name) {
  std::vector<std::string> out;
  for (const auto& x : array(j, name, kMaxItems)) {
    if (!x.is_string() || x.get_ref<const std::string&>().size() > kMaxString)
      throw std::runtime_error(std::string("'") + name + "' holds something other than a name");
    out.push_back(x.get<std::string>());
  }
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
                   {"pause_us", e.pause_us}, {"state", to_string(e.state)}, {"pending", e.state == EntryState::Pending},
                   {"functions", e.functions}, {"new_functions", e.new_functions},
                   {"trampolines", t}, {"regions", r},         {"patch_name", e.patch_name}};
  if (!e.hooks.empty()) {   // absent rather than empty: records of updates without hooks stay as they were
    nlohmann::json h = nlohmann::json::array();
    for (const auto& x : e.hooks) h.push_back({{"kind", x.kind}, {"label", x.label}, {"at", x.at.value()}});
    j["hooks"] = h;
  }
  if (with_patch) j["patch"] = e.patch_text;
  if (!e.unwind.empty()) {   // absent in entries with none, as before unwind tables travelled
    nlohmann::json u = nlohmann::json::array();
    for (const auto& x : e.unwind) u.push_back({{"eh_frame", x.eh_frame.value()}, {"object", x.object.value()}});
    j["unwind"] = u;
  }
  return j;
}

EntryState state_from(const std::string& s) {
  for (EntryState st : {EntryState::Pending, EntryState::Applied, EntryState::Removing})
    if (s == to_string(st)) return st;
  throw std::runtime_error("unknown state '" + s.substr(0, 32) + "'");
}

LedgerEntry entry_from_json(const nlohmann::json& j) {
  LedgerEntry e;
  e.id = str(j, "id", 128);
  e.update_path = str(j, "update");
  e.applied_at = str(j, "applied_at", 64);
  const auto& pause = field(j, "pause_us");
  if (!pause.is_number() || !std::isfinite(pause.get<double>()) || pause.get<double>() < 0)
    throw std::runtime_error("'pause_us' is not a duration");
  e.pause_us = pause.get<double>();
  e.state = state_from(str(j, "state", 16));
  e.functions = strings(j, "functions");
  e.new_functions = strings(j, "new_functions");
  e.patch_name = str(j, "patch_name");
  e.patch_text = str(j, "patch", kLedgerSize);
  for (const auto& x : array(j, "trampolines", kMaxItems))
    e.trampolines.push_back(Trampoline{str(x, "function"), TargetAddr(u64(x, "function_at")), TargetAddr(u64(x, "site")),
                                       unhex(str(x, "original")), unhex(str(x, "jump")),
                                       TargetAddr(u64(x, "new_code")), u64(x, "size")});
  for (const auto& x : array(j, "regions", kMaxRegions))
    e.regions.push_back(Region{{TargetAddr(u64(x, "start")), TargetAddr(u64(x, "end"))}, str(x, "name")});
  if (j.contains("hooks"))
    for (const auto& x : array(j, "hooks", kMaxItems))
      e.hooks.push_back(LedgerHook{str(x, "kind", 16), str(x, "label"), TargetAddr(u64(x, "at"))});
  if (j.contains("unwind"))
    for (const auto& x : array(j, "unwind", kMaxItems))
      e.unwind.push_back(UnwindTable{TargetAddr(u64(x, "eh_frame")), TargetAddr(u64(x, "object"))});
  return e;
}

std::string map_files_path(pid_t pid, TargetRange r) {
  return fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, r.start.value(), r.end.value());
}

// Where the records live: root's /run, or a user's own runtime directory. Created
// owner-only; refused if someone else owns it or may write it (they could plant records).
Result<std::string> state_dir() {
  std::string base;
  if (geteuid() == 0) {
    base = "/run/livesplice";
  } else {
    const char* xdg = std::getenv("XDG_RUNTIME_DIR");
    if (!xdg || !*xdg) return error("not root and XDG_RUNTIME_DIR is not set: nowhere to keep livesplice's records");
    base = std::string(xdg) + "/livesplice";
  }
  std::string dir = base + "/processes";
  for (const std::string& d : {base, dir}) {
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return error("cannot create {}: {}", d, std::strerror(errno));
    struct stat st;
    if (::lstat(d.c_str(), &st) != 0) return error("cannot stat {}: {}", d, std::strerror(errno));
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022))
      return error("{} is not a directory only this user can write: refusing to keep records there", d);
  }
  return dir;
}

std::string record_path(const std::string& dir, const ProcessKey& k, const char* ext) {
  return fmt::format("{}/{}-{}.{}", dir, k.pid, k.start_time, ext);
}

// The memfd behind the copy, opened through map_files and checked to be the one the
// record names (a process can map anything at that address, even a file root may
// write), or -1 with a reason.
int open_copy(pid_t pid, TargetRange r, uint64_t inode, int flags, std::string& why) {
  int fd = ::open(map_files_path(pid, r).c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    why = fmt::format("cannot open it: {}", std::strerror(errno));
    return -1;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0 ||
      static_cast<uint64_t>(st.st_size) != kLedgerSize || (inode && st.st_ino != inode)) {
    why = "it is not the memfd livesplice made (another file was mapped there)";
    ::close(fd);
    return -1;
  }
  return fd;
}

// The copy's mapping must be the one of its name, read-only, exactly where the record
// says; the process may hold nothing else named so. A copy of the anonymous kind has no
// name: it must be an anonymous, private, read-only mapping of exactly the recorded
// range, and any memfd named like the ledger imitates it.
Status check_copy_mapping(pid_t pid, const std::vector<Mapping>& maps, const std::optional<TargetRange>& recorded,
                          CopyKind kind) {
  const std::string name = std::string("/memfd:") + kLedgerName;
  bool found = false;
  for (const auto& m : maps) {
    if (!m.path.starts_with(name)) continue;
    if (!recorded)
      return Status::error(fmt::format("process {}: a mapping at {}-{} is named like livesplice's ledger, but livesplice "
                                       "has no record of changing this process: a forged ledger (tampering); refusing, "
                                       "nothing written", pid, m.range.start, m.range.end), Exit::Unsafe);
    if (kind == CopyKind::Anonymous || m.range.start != recorded->start || m.range.end != recorded->end ||
        m.path != name)
      return Status::error(fmt::format("process {}: a mapping at {}-{} named '{}' imitates its ledger copy (at {}-{}): "
                                       "tampering from inside the process; refusing, nothing written", pid, m.range.start,
                                       m.range.end, printable(m.path), recorded->start, recorded->end), Exit::Unsafe);
    if (m.write || !m.shared)
      return Status::error(fmt::format("process {}: its ledger copy at {} was remapped {} (tampering from inside the "
                                       "process); refusing, nothing written", pid, m.range.start,
                                       m.write ? "writable" : "private"), Exit::Unsafe);
    found = true;
  }
  if (recorded && kind == CopyKind::Anonymous) {
    const Mapping* m = mapping_at(maps, recorded->start);
    if (!m || m->range.start != recorded->start || m->range.end != recorded->end || !m->path.empty() ||
        m->inode != 0 || m->shared || !m->read || m->write || m->exec)
      return Status::error(fmt::format("process {}: its ledger copy at {}-{} is no longer the anonymous read-only "
                                       "mapping livesplice made (changed from inside the process: tampering); "
                                       "refusing, nothing written", pid, recorded->start, recorded->end),
                           Exit::Unsafe);
    return {};
  }
  if (recorded && !found)
    return Status::error(fmt::format("process {}: its ledger copy at {} is gone (unmapped from inside the process: "
                                     "tampering); refusing, nothing written", pid, recorded->start), Exit::Unsafe);
  return {};
}

// Every region mapped where the record says under its name, every site in executable
// code: what the tool wrote, still standing (entries being removed excepted).
Status check_against_maps(pid_t pid, const std::vector<Mapping>& maps, const std::vector<LedgerEntry>& entries) {
  for (const auto& e : entries) {
    if (e.state == EntryState::Removing) continue;
    // A pending entry is recorded before its code is mapped.
    for (const auto& r : e.state == EntryState::Applied ? e.regions : std::vector<Region>{}) {
      if (!mapped_as_recorded(maps, r))
        return Status::error(fmt::format("process {}: update {}'s code at {} is not mapped as livesplice mapped it "
                                         "(changed from inside the process: tampering); refusing, nothing written",
                                         pid, e.id.substr(0, 8), r.range.start), Exit::Unsafe);
    }
    for (const auto& t : e.trampolines) {
      const Mapping* m = mapping_at(maps, t.site);
      if (!m || !m->exec || !m->range.contains(t.site + static_cast<int64_t>(t.jump.size()) - 1))
        return Status::error(fmt::format("process {}: update {}: {} at {} is not in executable code; refusing, "
                                         "nothing written", pid, e.id.substr(0, 8), printable(t.function), t.site),
                             Exit::Unsafe);
    }
  }
  return {};
}

const char* to_string(CopyKind k) { return k == CopyKind::Memfd ? "memfd" : "anonymous"; }

// The copy's first `len` bytes (no more than its mapping holds): through the memfd the
// record names (checked by inode), or through /proc/PID/mem for the anonymous kind
// (whose mapping check_copy_mapping has just checked).
Result<std::string> read_copy(pid_t pid, TargetRange r, uint64_t inode, CopyKind kind, size_t len) {
  std::string seen(std::min<size_t>(len, r.size()), '\0');
  if (kind == CopyKind::Anonymous) {
    auto mem = Memory::open(pid);
    if (!mem) return mem.status();
    LS_TRY(mem->read(r.start, std::span(reinterpret_cast<uint8_t*>(seen.data()), seen.size()))
               .context(fmt::format("process {}: cannot read its ledger copy", pid)));
    return seen;
  }
  std::string why;
  int copy = open_copy(pid, r, inode, O_RDONLY, why);
  if (copy < 0)
    return Status::error(fmt::format("process {}: its ledger copy at {}: {} (tampering); refusing, nothing written", pid,
                                     r.start, why), Exit::Unsafe);
  ssize_t n = ::pread(copy, seen.data(), seen.size(), 0);
  int err = errno;
  ::close(copy);
  if (n < 0) return error("process {}: cannot read its ledger copy: {}", pid, std::strerror(err));
  seen.resize(static_cast<size_t>(n));
  return seen;
}

uint64_t stat_start_time(pid_t pid) {
  char path[64], buf[1024];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');   // comm may hold spaces and parentheses
  if (!p) return 0;
  int at = 2;
  for (++p; *p && at < 22; ++p)
    if (*p == ' ') ++at;
  return at == 22 ? std::strtoull(p, nullptr, 10) : 0;
}

// Records and locks of processes that have exited (or whose PID now names another
// process). No command can be working on those: it would have failed to key them.
void prune_records(const std::string& dir) {
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = f.path().filename().string();
    unsigned long pid = 0;
    unsigned long long start = 0;
    char ext[8] = {};
    if (std::sscanf(name.c_str(), "%lu-%llu.%7s", &pid, &start, ext) != 3) continue;
    if (std::string(ext) != "json" && std::string(ext) != "lock") continue;
    uint64_t now = stat_start_time(static_cast<pid_t>(pid));
    bool gone = now ? now != start : ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    if (gone) std::filesystem::remove(f.path(), ec);
  }
}

// No record, but a copy: a command killed between mapping the copy and its first commit
// leaves it empty, and it is taken up again (a lookalike that is empty gives its maker
// nothing: what is written into it is checked against the record on every read).
// Anything else named like the ledger is a forgery.
using CopyAt = std::optional<std::pair<TargetRange, uint64_t>>;   // the mapping, its inode

Result<CopyAt> empty_copy(pid_t pid, const std::vector<Mapping>& maps) {
  const std::string name = std::string("/memfd:") + kLedgerName;
  const Mapping* only = nullptr;
  size_t count = 0;
  for (const auto& m : maps)
    if (m.path.starts_with(name)) {
      ++count;
      only = &m;
    }
  if (count == 0) return CopyAt();
  if (count == 1 && only->path == name && only->shared && !only->write && only->range.size() == kLedgerSize) {
    std::string why;
    int fd = open_copy(pid, only->range, 0, O_RDONLY, why);
    if (fd >= 0) {
      std::string head(4096, '\1');
      ssize_t n = ::pread(fd, head.data(), head.size(), 0);
      ::close(fd);
      struct stat st;
      if (n == static_cast<ssize_t>(head.size()) && std::all_of(head.begin(), head.end(), [](char c) { return c == 0; }) &&
          ::stat(map_files_path(pid, only->range).c_str(), &st) == 0)
        return CopyAt(std::pair(only->range, static_cast<uint64_t>(st.st_ino)));
    }
  }
  LS_TRY(check_copy_mapping(pid, maps, std::nullopt, CopyKind::Memfd));   // the refusal, naming the mapping
  return error("unreachable");
}

}  // namespace

Status Ledger::adopt_empty_copy(pid_t pid, const std::vector<Mapping>& maps, Ledger& l) {
  auto copy = empty_copy(pid, maps);
  if (!copy) return copy.status();
  if (*copy) {
    l.copy_ = (*copy)->first;
    l.copy_inode_ = (*copy)->second;
    l.notes_.push_back("its ledger copy was mapped but never written (a command was killed right after mapping "
                       "it): taken up again");
  }
  return {};
}

const char* to_string(EntryState s) {
  switch (s) {
    case EntryState::Pending: return "pending";
    case EntryState::Applied: return "applied";
    case EntryState::Removing: return "removing";
  }
  return "?";
}

std::string serialize_ledger(const std::vector<LedgerEntry>& entries) {
  nlohmann::json j;
  j["updates"] = nlohmann::json::array();
  for (const auto& e : entries) j["updates"].push_back(entry_json(e, true));
  // Names from an update (symbols) need not be UTF-8: replaced (U+FFFD), never a throw.
  return std::string(kMagic, kMagicLen) + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool mapped_as_recorded(const std::vector<Mapping>& maps, const Region& r) {
  if (r.name.starts_with("anonymous:")) {
    // Anonymous mappings have no name, and the kernel may merge them with a neighbour of
    // the same protection: every page private and anonymous is what can be checked.
    for (TargetAddr at = r.range.start; at < r.range.end;) {
      const Mapping* m = mapping_at(maps, at);
      if (!m || !m->path.empty() || m->inode != 0 || m->shared) return false;
      at = m->range.end;
    }
    return true;
  }
  const Mapping* first = mapping_at(maps, r.range.start);
  const Mapping* last = mapping_at(maps, r.range.end - 1);
  return first && last && first->path == r.name && last->path == r.name && first->range.start == r.range.start;
}

Status check_entry(const LedgerEntry& e) {
  auto bad = [&](const std::string& what) {
    return Status::error(fmt::format("update {}: {}", printable(e.id.substr(0, 16)), what), Exit::Unsafe);
  };
  if (e.id.size() < 8 || !std::all_of(e.id.begin(), e.id.end(), [](char c) { return hex_digit(c) >= 0; }))
    return bad("its id is not a content hash");
  if (e.regions.empty()) return bad("it has no code region");
  for (const auto& r : e.regions) {
    if (r.range.start.value() % 4096 || r.range.end.value() % 4096 || r.range.start >= r.range.end ||
        r.range.size() > kMaxCode || r.range.end.value() > kUserTop)
      return bad(fmt::format("its region {}-{} is not a plausible mapping", r.range.start, r.range.end));
    const std::string own = "livesplice:" + e.id.substr(0, 8);
    if (r.name != "/memfd:" + own && r.name != "anonymous:" + own) return bad("its region is not named after it");
  }
  for (size_t i = 0; i < e.trampolines.size(); ++i) {
    const Trampoline& t = e.trampolines[i];
    auto at = [&] { return fmt::format("{} at {}", printable(t.function), t.site); };
    if (t.site.value() >= kUserTop - arch::host().max_jump_size) return bad(at() + ": not a user-space address");
    if (t.site != t.function_at && t.site != t.function_at + 4) return bad(at() + ": not at its function's entry");
    if (t.jump != arch::host().jump(t.site, t.new_code)) return bad(at() + ": its jump is not the jump livesplice writes there");
    if (t.original.size() != t.jump.size())
      return bad(fmt::format("{}: {} original bytes for a {}-byte jump", at(), t.original.size(), t.jump.size()));
    if (t.size > kMaxCode || t.size < static_cast<uint64_t>(t.site - t.function_at) + t.jump.size())
      return bad(at() + ": its function's size cannot hold the jump");
    if (std::none_of(e.regions.begin(), e.regions.end(), [&](const Region& r) { return r.range.contains(t.new_code); }))
      return bad(at() + ": its jump leads outside the update's code");
    for (size_t k = 0; k < i; ++k)
      if (e.trampolines[k].site == t.site) return bad(at() + ": two jumps at one site");
  }
  // livesplice runs code at these addresses in the target (undo's hooks) or hands them to
  // its unwinder: they must be the update's own, never an address the target chose.
  auto inside = [&](TargetAddr a) {
    return std::any_of(e.regions.begin(), e.regions.end(), [&](const Region& r) { return r.range.contains(a); });
  };
  for (const auto& h : e.hooks) {
    if (h.kind != "pre_undo" && h.kind != "undo" && h.kind != "post_undo")
      return bad(fmt::format("{}: not a hook undo runs", printable(h.label)));
    if (!inside(h.at)) return bad(fmt::format("{} at {}: outside the update's code", printable(h.label), h.at));
  }
  for (const auto& u : e.unwind)
    if (!inside(u.eh_frame) || !inside(u.object + 63) || u.object.value() % 8)
      return bad(fmt::format("its unwind table at {} is not inside the update's code", u.eh_frame));
  return {};
}

Result<std::vector<LedgerEntry>> parse_ledger(std::string_view text) {
  if (text.size() > kLedgerSize) return Status::error("the ledger is larger than a ledger can be", Exit::Unsafe);
  if (text.size() < kMagicLen || text.substr(0, kMagicLen) != std::string_view(kMagic, kMagicLen))
    return Status::error("the ledger has an unknown format", Exit::Unsafe);
  std::vector<LedgerEntry> entries;
  try {
    // Nesting deeper than the format's is refused while parsing, before it costs anything.
    auto depth_guard = [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > kMaxDepth) throw std::runtime_error("nested deeper than a ledger");
      return true;
    };
    auto j = nlohmann::json::parse(text.substr(kMagicLen), depth_guard);
    for (const auto& e : array(j, "updates", kMaxItems)) entries.push_back(entry_from_json(e));
  } catch (const std::exception& e) {
    return Status::error(fmt::format("the ledger is malformed: {}", printable(e.what())), Exit::Unsafe);
  }
  for (const auto& e : entries) LS_TRY(check_entry(e));
  for (size_t i = 0; i < entries.size(); ++i)
    for (size_t k = 0; k < i; ++k)
      if (entries[k].id == entries[i].id)
        return Status::error(fmt::format("the ledger lists update {} twice", entries[i].id.substr(0, 8)), Exit::Unsafe);
  return entries;
}

Result<ProcessKey> process_key(pid_t pid) {
  uint64_t start = stat_start_time(pid);
  if (start == 0) return error("process {}: cannot read /proc/{}/stat (does it exist?)", pid, pid);
  return ProcessKey{pid, start};
}

Result<std::vector<ProcessKey>> recorded_processes() {
  auto dir = state_dir();
  if (!dir) return dir.status();
  std::vector<ProcessKey> out;
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(*dir, ec)) {
    unsigned long pid = 0;
    unsigned long long start = 0;
    char ext[8] = {};
    if (std::sscanf(f.path().filename().c_str(), "%lu-%llu.%7s", &pid, &start, ext) != 3) continue;
    if (std::string(ext) != "json" || stat_start_time(static_cast<pid_t>(pid)) != start) continue;
    out.push_back({static_cast<pid_t>(pid), start});
  }
  if (ec) return error("cannot list {}: {}", *dir, ec.message());
  std::sort(out.begin(), out.end(), [](const ProcessKey& a, const ProcessKey& b) { return a.pid < b.pid; });
  return out;
}

Result<LedgerLock> LedgerLock::take(const ProcessKey& key, bool exclusive, int wait_s) {
  auto dir = state_dir();
  if (!dir) return dir.status();
  std::string path = record_path(*dir, key, "lock");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return error("cannot open {}: {}", path, std::strerror(errno));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
  while (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      int e = errno;
      ::close(fd);
      return error("cannot lock {}: {}", path, std::strerror(e));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::close(fd);
      return error("process {}: another livesplice command is still working on it (waited {} s)", key.pid, wait_s);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return LedgerLock(fd);
}

LedgerLock::~LedgerLock() {
  if (fd_ >= 0) ::close(fd_);
}

Result<Ledger> Ledger::read(const ProcessKey& key, const std::vector<Mapping>& maps) {
  const pid_t pid = key.pid;
  Ledger l;
  l.key_ = key;
  auto dir = state_dir();
  if (!dir) return dir.status();
  std::string path = record_path(*dir, l.key_, "json");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno != ENOENT) return error("cannot read {}: {}", path, std::strerror(errno));
  if (fd < 0) {
    LS_TRY(adopt_empty_copy(pid, maps, l));
    return l;
  }
  struct stat st;
  std::string raw;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= kMaxRecord) {
    raw.resize(static_cast<size_t>(st.st_size));
    if (::pread(fd, raw.data(), raw.size(), 0) != static_cast<ssize_t>(raw.size())) raw.clear();
  }
  ::close(fd);
  try {
    auto rec = nlohmann::json::parse(raw);
    if (u64(rec, "pid") != static_cast<uint64_t>(pid) || u64(rec, "start_time") != l.key_.start_time)
      throw std::runtime_error("it names another process");
    const auto& copy = field(rec, "copy");
    l.copy_ = TargetRange{TargetAddr(u64(copy, "start")), TargetAddr(u64(copy, "end"))};
    l.copy_inode_ = u64(copy, "inode");
    const std::string kind = str(copy, "kind", 16);
    if (kind != to_string(CopyKind::Memfd) && kind != to_string(CopyKind::Anonymous))
      throw std::runtime_error("unknown kind of copy '" + kind + "'");
    l.copy_kind_ = kind == to_string(CopyKind::Memfd) ? CopyKind::Memfd : CopyKind::Anonymous;
    l.text_ = str(rec, "text", kLedgerSize);
    l.previous_text_ = str(rec, "previous", kLedgerSize);
  } catch (const std::exception& e) {
    return error("{}: livesplice's record of process {} is unreadable: {}", path, pid, e.what());
  }
  LS_TRY(check_copy_mapping(pid, maps, l.copy_, l.copy_kind_));

  // The copy: exactly the recorded bytes (read no further than the record allows).
  auto read = read_copy(pid, *l.copy_, l.copy_inode_, l.copy_kind_,
                        std::max(l.text_.size(), l.previous_text_.size()) + 1);
  if (!read) return read.status();
  const std::string& seen = *read;
  auto holds = [&](const std::string& text) {
    return seen.size() > text.size() && seen.compare(0, text.size(), text) == 0 &&
           std::all_of(seen.begin() + static_cast<long>(text.size()), seen.end(), [](char c) { return c == 0; });
  };
  if (!holds(l.text_)) {
    if (l.previous_text_.empty() || !holds(l.previous_text_))
      return Status::error(fmt::format("process {}: its ledger copy at {} differs from livesplice's record ({}): it was "
                                       "changed from inside the process (tampering); refusing, nothing written",
                                       pid, l.copy_->start, path), Exit::Unsafe);
    l.notes_.push_back("its ledger copy was one commit behind the record (a command was killed between the two "
                       "writes); the next change rewrites it");
  }
  auto entries = parse_ledger(l.text_);
  if (!entries) return Status::error(fmt::format("{}: {}", path, entries.status().message()), Exit::Unsafe);
  l.entries_ = std::move(*entries);
  LS_TRY(check_against_maps(pid, maps, l.entries_));
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

LedgerEntry* Ledger::entry(const std::string& id) {
  for (auto& e : entries_)
    if (e.id == id) return &e;
  return nullptr;
}

Status Ledger::commit() {
  const pid_t pid = key_.pid;
  if (!copy_) return error("process {}: no ledger region", pid);
  std::string text = serialize_ledger(entries_);
  if (text.size() + 1 > kLedgerSize) return error("process {}: ledger full ({} bytes needed)", pid, text.size());
  // Where the copy goes, checked before the record changes: the memfd the record names
  // (by inode, on the open file), or the anonymous mapping (in the maps, as a read
  // checks it), written through /proc/PID/mem.
  int copy = -1;
  std::optional<Memory> mem;
  if (copy_kind_ == CopyKind::Memfd) {
    std::string why;
    copy = open_copy(pid, *copy_, copy_inode_, O_RDWR, why);
    if (copy < 0)
      return Status::error(fmt::format("process {}: its ledger copy at {}: {}", pid, copy_->start, why), Exit::Unsafe);
    if (copy_inode_ == 0) {
      struct stat st;
      (void)::fstat(copy, &st);
      copy_inode_ = st.st_ino;
    }
  } else {
    auto maps = read_maps(pid);
    if (!maps) return maps.status();
    LS_TRY(check_copy_mapping(pid, *maps, copy_, copy_kind_));
    auto opened = Memory::open(pid);
    if (!opened) return opened.status();
    mem.emplace(std::move(*opened));
  }
  auto close_copy = [&] {
    if (copy >= 0) ::close(copy);
  };
  // The record first: it is the truth, replaced whole (rename), and a copy one commit
  // behind it is recognised on the next read.
  auto dir = state_dir();
  if (!dir) {
    close_copy();
    return dir.status();
  }
  prune_records(*dir);
  nlohmann::json rec{{"pid", pid},
                     {"start_time", key_.start_time},
                     {"copy", {{"start", copy_->start.value()}, {"end", copy_->end.value()}, {"inode", copy_inode_},
                               {"kind", to_string(copy_kind_)}}},
                     {"text", text},
                     {"previous", text_}};
  std::string path = record_path(*dir, key_, "json"), tmp = path + ".new";
  std::string body = rec.dump();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  bool written = fd >= 0 && ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size()) && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!written || ::rename(tmp.c_str(), path.c_str()) != 0) {
    close_copy();
    return error("cannot write {}: {}", path, std::strerror(errno));
  }
  // Then the copy, padded with zeros over whatever the longer old text held.
  std::string out = text;
  out.resize(std::max(text.size(), text_.size()) + 1, '\0');
  bool copied = mem ? mem->write(copy_->start, std::span(reinterpret_cast<const uint8_t*>(out.data()), out.size())).ok()
                    : ::pwrite(copy, out.data(), out.size(), 0) == static_cast<ssize_t>(out.size());
  close_copy();
  previous_text_ = std::move(text_);
  text_ = std::move(text);
  if (!copied) return error("process {}: cannot write its ledger copy", pid);
  return {};
}

nlohmann::json Ledger::to_json(bool with_patch) const {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& e : entries_) j.push_back(entry_json(e, with_patch));
  return j;
}

}  // namespace ls::proc
