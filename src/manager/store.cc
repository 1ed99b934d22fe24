// The store's files and lock (see store.h for the layout and why each write is whole).
#include "manager/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ls::manager {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTempMark = ".tmp.";   // ".NAME.tmp.PID": a write under way, or a killed one's

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read: {}", path, std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", dir, std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail("{}: cannot sync: {}", dir, std::strerror(errno));
}

void make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) fail("{}: cannot create: {}", dir, std::strerror(errno));
}

}  // namespace

std::string iso(int64_t epoch_seconds) {
  std::time_t t = static_cast<std::time_t>(epoch_seconds);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string now_iso() { return iso(std::time(nullptr)); }

std::string store_root(const std::string& flag) {
  std::string root = flag;
  if (root.empty())
    if (const char* env = std::getenv("LIVESPLICE_ROOT"); env && *env) root = env;
  if (root.empty()) root = kDefaultRoot;
  return fs::absolute(root).lexically_normal().string();
}

void write_atomically(const std::string& path, std::string_view bytes) {
  fs::path p(path);
  std::string tmp = (p.parent_path() / ("." + p.filename().string() + kTempMark + std::to_string(::getpid()))).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  int err = done == bytes.size() ? 0 : errno;
  if (!err && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    fail("{}: cannot write: {}", path, std::strerror(err));
  }
  fsync_dir(p.parent_path().string());
}

Store Store::open(Context& ctx, const std::string& root, bool exclusive) {
  Store s;
  s.root_ = root;
  s.exclusive_ = exclusive;
  if (exclusive) {
    std::error_code ec;
    fs::create_directories(root, ec);
    if (ec) fail("{}: cannot create the store: {}", root, ec.message());
    make_dir(s.updates_dir());
  }
  std::string lock = root + "/lock";
  s.lock_fd_ = ::open(lock.c_str(), (exclusive ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (s.lock_fd_ < 0 && !exclusive && errno == ENOENT) {
    // No command has changed this store yet (each creates the lock first), but a package
    // may have put updates in it (dpkg): read them, there is no one to wait for.
    s.load(ctx);
    return s;
  }
  if (s.lock_fd_ < 0) fail("{}: cannot open: {}", lock, std::strerror(errno));
  int how = exclusive ? LOCK_EX : LOCK_SH;
  if (::flock(s.lock_fd_, how | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) fail("{}: cannot lock: {}", lock, std::strerror(errno));
    ctx.progress(fmt::format("waiting for another livesplice command to finish with the store {}", root));
    while (::flock(s.lock_fd_, how) != 0)
      if (errno != EINTR) fail("{}: cannot lock: {}", lock, std::strerror(errno));
  }
  s.load(ctx);
  return s;
}

Store::Store(Store&& o) noexcept
    : root_(std::move(o.root_)),
      lock_fd_(std::exchange(o.lock_fd_, -1)),
      exclusive_(o.exclusive_),
      updates_(std::move(o.updates_)),
      problems_(std::move(o.problems_)),
      attempts_(std::move(o.attempts_)),
      attempts_changed_(o.attempts_changed_) {}

Store::~Store() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

// Reads every update (verified), its install record, and the attempts; under the
// exclusive lock also clears what killed commands left (temporaries, orphan records).
void Store::load(Context& ctx) {
  std::error_code ec;
  std::vector<fs::path> files;
  if (!fs::exists(updates_dir())) return;   // nothing was ever installed
  for (const auto& f : fs::directory_iterator(updates_dir(), ec)) files.push_back(f.path());
  std::sort(files.begin(), files.end());
  // Updates without an install record (a package's: dpkg writes none) go in the order of
  // their files' times, which `livesplice package` sets in the order updates apply.
  std::map<std::string, fs::file_time_type> unrecorded_time;
  for (const auto& f : files) {
    std::string name = f.filename().string(), path = f.string();
    if (name.starts_with(".") && name.find(kTempMark) != std::string::npos) {
      if (exclusive_) fs::remove(f, ec);   // a write a killed command never finished
      continue;
    }
    if (f.extension() == ".json") {
      if (!fs::exists(fs::path(f).replace_extension(".lsu")) && exclusive_) fs::remove(f, ec);
      continue;
    }
    if (f.extension() != ".lsu" || !fs::is_regular_file(f)) {
      problems_.push_back({path, "not an update file of the store (the store holds only ID.lsu and ID.json)"});
      continue;
    }
    StoredUpdate u;
    try {
      u.contents = std::make_shared<const update::Contents>(update::Contents::load(path));
    } catch (const Error& e) {
      problems_.push_back({path, e.what()});
      continue;
    }
    u.id = u.contents->id;
    u.path = path;
    if (name != u.id + ".lsu") {
      problems_.push_back({path, fmt::format("holds update {}, not the one its name says: not installed by livesplice "
                                             "install", u.id)});
      continue;
    }
    u.sequence = UINT64_MAX;   // no install record: after the others, oldest file first
    try {
      auto meta = nlohmann::json::parse(read_whole(fs::path(f).replace_extension(".json").string()));
      u.sequence = meta.at("sequence").get<uint64_t>();
      u.installed = meta.at("installed").get<std::string>();
    } catch (const std::exception&) {
      ctx.note(fmt::format("{}: no install record (installed by a package, or a killed install); ordered "
                           "after the others, by the file's time", path));
      unrecorded_time[path] = fs::last_write_time(f, ec);
    }
    updates_.push_back(std::move(u));
  }
  if (ec) fail("{}: cannot list: {}", updates_dir(), ec.message());
  std::stable_sort(updates_.begin(), updates_.end(), [&](const StoredUpdate& a, const StoredUpdate& b) {
    if (a.sequence != b.sequence) return a.sequence < b.sequence;
    return a.sequence == UINT64_MAX && unrecorded_time[a.path] < unrecorded_time[b.path];
  });

  std::string attempts = root_ + "/attempts.json";
  if (!fs::exists(attempts)) return;
  try {
    const auto recorded = nlohmann::json::parse(read_whole(attempts));   // outlives the loop over it
    for (const auto& [id, per] : recorded.items())
      for (const auto& [proc, a] : per.items())
        attempts_[id][proc] = Attempt{a.at("error"), a.at("at"), a.at("count"), a.value("kind", ""),
                                      a.value("kind_text", ""), a.value("next", int64_t{0})};
  } catch (const std::exception& e) {
    // Only a record for status: a damaged one is forgotten, not a reason to stop.
    problems_.push_back({attempts, fmt::format("unreadable ({}): the failures it kept are forgotten", e.what())});
    attempts_.clear();
    attempts_changed_ = true;
  }
}

const StoredUpdate* Store::find(const std::string& id) const {
  for (const auto& u : updates_)
    if (u.id == id) return &u;
  return nullptr;
}

std::vector<const StoredUpdate*> Store::matching(const std::string& prefix) const {
  std::vector<const StoredUpdate*> out;
  for (const auto& u : updates_)
    if (!prefix.empty() && u.id.starts_with(prefix)) out.push_back(&u);
  return out;
}

bool Store::owns(const std::string& path) const {
  return fs::path(path).parent_path().lexically_normal() == fs::path(updates_dir());
}

const StoredUpdate& Store::add(const std::string& file) {
  // Verified before it is copied (and read from the copy again below: what is stored is
  // what was checked).
  update::Contents checked = update::Contents::load(file);
  if (const StoredUpdate* there = find(checked.id)) return *there;
  uint64_t sequence = 0;
  for (const auto& u : updates_)
    if (u.sequence != UINT64_MAX) sequence = std::max(sequence, u.sequence + 1);
  std::string base = updates_dir() + "/" + checked.id;
  std::string installed = now_iso();
  // The record first: without its update it is a leftover the next command deletes.
  write_atomically(base + ".json",
                   nlohmann::json{{"sequence", sequence}, {"installed", installed}, {"from", file}}.dump(2) + "\n");
  const auto& image = checked.file.image();
  write_atomically(base + ".lsu", std::string_view(reinterpret_cast<const char*>(image.data()), image.size()));
  StoredUpdate u;
  u.contents = std::make_shared<const update::Contents>(update::Contents::load(base + ".lsu"));
  if (u.contents->id != checked.id) fail("{}: changed while it was copied into the store", file);
  u.id = checked.id;
  u.path = base + ".lsu";
  u.installed = installed;
  u.sequence = sequence;
  updates_.push_back(std::move(u));
  return updates_.back();
}

void Store::remove(const std::string& id) {
  std::string base = updates_dir() + "/" + id;
  // The update first: from then on it is not stored, whatever else a kill leaves (its
  // record alone is a leftover the next command deletes).
  if (::unlink((base + ".lsu").c_str()) != 0 && errno != ENOENT) fail("{}.lsu: cannot remove: {}", base, std::strerror(errno));
  if (::unlink((base + ".json").c_str()) != 0 && errno != ENOENT) fail("{}.json: cannot remove: {}", base, std::strerror(errno));
  fsync_dir(updates_dir());
  std::erase_if(updates_, [&](const StoredUpdate& u) { return u.id == id; });
  if (attempts_.erase(id)) attempts_changed_ = true;
}

void Store::record_failure(const std::string& id, const std::string& process, const std::string& error,
                           const std::string& kind, const std::string& kind_text, int first_delay_s) {
  Attempt& a = attempts_[id][process];
  a.error = error;
  a.at = now_iso();
  ++a.count;
  a.kind = kind;
  a.kind_text = kind_text;
  constexpr int64_t kMaxDelay = 24 * 3600;
  int64_t delay = first_delay_s;
  for (int i = 1; i < a.count && delay < kMaxDelay; ++i) delay *= 4;
  a.next = static_cast<int64_t>(std::time(nullptr)) + std::min(delay, kMaxDelay);
  attempts_changed_ = true;
}

const Attempt* Store::attempt(const std::string& id, const std::string& process) const {
  auto per = attempts_.find(id);
  if (per == attempts_.end()) return nullptr;
  auto a = per->second.find(process);
  return a == per->second.end() ? nullptr : &a->second;
}

void Store::record_success(const std::string& id, const std::string& process) {
  auto it = attempts_.find(id);
  if (it == attempts_.end() || !it->second.erase(process)) return;
  if (it->second.empty()) attempts_.erase(it);
  attempts_changed_ = true;
}

void Store::save_attempts() {
  if (!attempts_changed_ || !exclusive_) return;
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [id, per] : attempts_)
    for (const auto& [proc, a] : per)
      j[id][proc] = {{"error", a.error}, {"at", a.at},   {"count", a.count},
                     {"kind", a.kind},   {"kind_text", a.kind_text}, {"next", a.next}, {"next_at", iso(a.next)}};
  write_atomically(root_ + "/attempts.json", j.dump(2) + "\n");
  attempts_changed_ = false;
}

}  // namespace ls::manager
