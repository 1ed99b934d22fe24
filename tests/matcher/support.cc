#include "support.h"

#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "update/manifest.h"

namespace mt {

namespace fs = std::filesystem;

using lstest::quote;

std::string must(const std::string& command, const std::string& cwd) {
  Run r = sh(command, cwd);
  EXPECT_EQ(r.status, 0) << command << "\n" << r.out << r.err;
  if (r.status != 0) throw std::runtime_error("command failed: " + command + "\n" + r.err);
  return r.out;
}

Project::Project(const std::map<std::string, std::string>& files) {
  for (const auto& [name, text] : files) write_file(dir / name, text);
}

void Project::make() const { must("make -s", dir.path()); }

std::string Project::patch(const std::string& file, const std::string& patched) const {
  TempDir work;
  write_file(work / ("a/" + file), read_file(dir / file));
  write_file(work / ("b/" + file), patched);
  Run r = sh("diff -u a/" + quote(file) + " b/" + quote(file), work.path());
  EXPECT_EQ(r.status, 1) << "patch for " << file << " changes nothing";
  return r.out;
}

std::string Project::create(const std::string& file, const std::string& patched) const {
  std::string out = work / std::to_string(++creates);
  fs::create_directories(out);
  write_file(out + "/fix.patch", patch(file, patched));
  std::string update = out + "/fix.lsu";
  must(quote(lstest::livesplice()) + " create -q --source " + quote(dir.path()) + " --patch " + quote(out + "/fix.patch") +
       " -o " + quote(update));
  return update;
}

std::vector<Sym> symbols(const std::string& elf) {
  std::istringstream in(must("readelf -sW " + quote(elf)));
  std::vector<Sym> syms;
  std::string line, file;
  bool symtab = false;
  while (std::getline(in, line)) {
    if (line.starts_with("Symbol table")) {
      symtab = line.find("'.symtab'") != std::string::npos;
      continue;
    }
    if (!symtab) continue;
    std::istringstream l(line);
    std::string num, value, size, type, bind, vis, ndx, name;
    if (!(l >> num >> value >> size >> type >> bind >> vis >> ndx) || num.back() != ':' || !isdigit(static_cast<unsigned char>(num[0]))) continue;
    l >> name;
    if (type == "FILE") {
      file = name;
      continue;
    }
    if (ndx == "UND" || name.empty()) continue;
    Sym s;
    s.name = name;
    s.value = std::stoull(value, nullptr, 16);
    s.size = std::stoull(size, nullptr, 0);
    s.type = type;
    s.bind = bind;
    s.file = bind == "LOCAL" ? file : "";
    syms.push_back(s);
  }
  return syms;
}

std::vector<uint64_t> all_named(const std::vector<Sym>& syms, const std::string& name) {
  std::vector<uint64_t> v;
  for (const auto& s : syms)
    if (s.name == name) v.push_back(s.value);
  return v;
}

uint64_t symbol(const std::vector<Sym>& syms, const std::string& name, const std::string& file) {
  std::vector<uint64_t> v;
  for (const auto& s : syms)
    if (s.name == name && (file.empty() || s.file == file)) v.push_back(s.value);
  EXPECT_EQ(v.size(), 1u) << "symbol " << name << " (" << file << ")";
  if (v.size() != 1) throw std::runtime_error("no unique symbol " + name);
  return v.front();
}

uint64_t plt_entry(const std::string& elf, const std::string& name) {
  std::istringstream in(must("objdump -d -j .plt.sec -j .plt " + quote(elf)));
  std::string line;
  while (std::getline(in, line))
    if (line.find("<" + name + "@plt>:") != std::string::npos) return std::stoull(line, nullptr, 16);
  ADD_FAILURE() << "no " << name << "@plt in " << elf;
  throw std::runtime_error("no plt entry");
}

uint64_t got_slot(const std::string& elf, const std::string& type, const std::string& name) {
  std::istringstream in(must("readelf -rW " + quote(elf)));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string off, info, t, value, sym;
    if (!(l >> off >> info >> t) || t != type) continue;
    l >> value >> sym;
    if (sym == name || sym.starts_with(name + "@") || (name.empty() && value == "+")) return std::stoull(off, nullptr, 16);
  }
  ADD_FAILURE() << "no " << type << " for " << name << " in " << elf;
  throw std::runtime_error("no GOT slot");
}

namespace {
struct Phdr {
  std::string type;
  uint64_t vaddr = 0, memsz = 0, align = 0;
};
std::vector<Phdr> program_headers(const std::string& elf) {
  std::istringstream in(must("readelf -lW " + quote(elf)));
  std::vector<Phdr> v;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::vector<std::string> t;
    for (std::string w; l >> w;) t.push_back(w);
    if (t.size() < 8 || !t[1].starts_with("0x")) continue;
    Phdr p;
    p.type = t[0];
    p.vaddr = std::stoull(t[2], nullptr, 16);
    p.memsz = std::stoull(t[5], nullptr, 16);
    p.align = std::stoull(t.back(), nullptr, 16);
    v.push_back(p);
  }
  return v;
}
}  // namespace

int64_t tp_offset(const std::string& elf, const std::vector<Sym>& syms, const std::string& name) {
  for (const auto& p : program_headers(elf))
    if (p.type == "TLS") {
      uint64_t block = (p.memsz + p.align - 1) / p.align * p.align;
      return static_cast<int64_t>(symbol(syms, name)) - static_cast<int64_t>(block);
    }
  ADD_FAILURE() << "no PT_TLS in " << elf;
  throw std::runtime_error("no PT_TLS");
}

uint64_t first_load_vaddr(const std::string& elf) {
  for (const auto& p : program_headers(elf))
    if (p.type == "LOAD") return p.vaddr;
  throw std::runtime_error("no PT_LOAD");
}

Program::Program(const std::string& binary, const std::map<std::string, std::string>& env) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe");
  pid_ = fork();
  if (pid_ == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    execl(binary.c_str(), binary.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string line;
  pollfd p{fds[0], POLLIN, 0};
  char c;
  while (line.find('\n') == std::string::npos && poll(&p, 1, 20000) == 1 && read(fds[0], &c, 1) == 1) line += c;
  close(fds[0]);
  if (line.find('\n') == std::string::npos) {
    ADD_FAILURE() << binary << " did not start (no first line)";
    throw std::runtime_error("program did not start");
  }
}

Program::~Program() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

namespace {
struct MapLine {
  uint64_t start, end, offset;
  std::string perms, path;
};
std::vector<MapLine> maps(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::vector<MapLine> v;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string range, perms, off, dev, inode, path;
    l >> range >> perms >> off >> dev >> inode >> path;
    MapLine m;
    m.start = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
    m.end = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
    m.offset = std::stoull(off, nullptr, 16);
    m.perms = perms;
    m.path = path;
    v.push_back(m);
  }
  return v;
}
}  // namespace

uint64_t Program::base(const std::string& path) const {
  std::string real = fs::canonical(path);
  for (const auto& m : maps(pid_))
    if (m.path == real && m.offset == 0) return m.start;
  ADD_FAILURE() << path << " is not mapped in " << pid_;
  throw std::runtime_error("not mapped");
}

std::vector<ls::TargetRange> Program::exec_ranges(const std::string& path) const {
  std::string real = fs::canonical(path);
  std::vector<ls::TargetRange> v;
  for (const auto& m : maps(pid_))
    if (m.path == real && m.perms.find('x') != std::string::npos)
      v.push_back({ls::TargetAddr(m.start), ls::TargetAddr(m.end)});
  return v;
}

ProcessMemory::ProcessMemory(pid_t pid) : fd_(open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY)) {
  if (fd_ < 0) ADD_FAILURE() << "cannot open /proc/" << pid << "/mem: " << strerror(errno);
}

ProcessMemory::~ProcessMemory() {
  if (fd_ >= 0) close(fd_);
}

ls::Status ProcessMemory::read(ls::TargetAddr at, std::span<uint8_t> out) const {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(at.value() + done));
    if (n <= 0) return ls::error("read of {} bytes at {:#x}: {}", out.size(), at.value(), n < 0 ? strerror(errno) : "end");
    done += static_cast<size_t>(n);
  }
  return {};
}

FileImage::FileImage(const std::string& path) {
  std::string s = read_file(path);
  bytes_.assign(s.begin(), s.end());
  Elf64_Ehdr eh;
  if (bytes_.size() < sizeof eh) throw std::runtime_error("not ELF: " + path);
  std::memcpy(&eh, bytes_.data(), sizeof eh);
  for (unsigned k = 0; k < eh.e_phnum; ++k) {
    Elf64_Phdr ph;
    std::memcpy(&ph, bytes_.data() + eh.e_phoff + k * sizeof ph, sizeof ph);
    if (ph.p_type == PT_LOAD) segments_.push_back({ph.p_vaddr, ph.p_filesz, ph.p_offset, (ph.p_flags & PF_X) != 0});
  }
}

ls::Status FileImage::read(ls::TargetAddr at, std::span<uint8_t> out) const {
  for (const auto& s : segments_)
    if (at.value() >= s.vaddr && at.value() + out.size() <= s.vaddr + s.filesz) {
      std::memcpy(out.data(), bytes_.data() + s.offset + (at.value() - s.vaddr), out.size());
      return {};
    }
  return ls::error("{:#x}+{:#x} is not in the file's loaded bytes", at.value(), out.size());
}

ls::Status Rewritten::read(ls::TargetAddr at, std::span<uint8_t> out) const {
  LS_TRY(file_.read(at, out));
  for (const auto& [a, b] : over_)
    for (size_t k = 0; k < b.size(); ++k)
      if (a + k >= at.value() && a + k < at.value() + out.size()) out[a + k - at.value()] = b[k];
  return {};
}

std::vector<ls::TargetRange> FileImage::exec_ranges() const {
  std::vector<ls::TargetRange> v;
  for (const auto& s : segments_)
    if (s.exec) v.push_back({ls::TargetAddr(s.vaddr), ls::TargetAddr(s.vaddr + s.filesz)});
  return v;
}

nlohmann::ordered_json manifest(const std::string& update) { return ls::update::read_manifest(update).json; }

Requests requests(const std::string& update, const std::vector<Sym>& syms, int64_t bias,
                  const std::vector<ls::TargetRange>& search, bool with_candidates) {
  auto m = manifest(update);
  Requests r;
  for (const auto& f : m["functions"]) {
    if (f["pre_section"].is_null()) continue;
    ls::match::Request q;
    std::string name = f["name"];
    q.label = m["objects"][f["object"].get<size_t>()]["path"].get<std::string>() + ":" + name;
    q.pre_section = f["pre_section"];
    if (with_candidates)
      for (const auto& s : syms)
        if (s.name == name && s.type == "FUNC") q.candidates.push_back(ls::TargetAddr(s.value + static_cast<uint64_t>(bias)));
    q.search = search;
    r.list.push_back(q);
    r.names.push_back(name);
  }
  return r;
}

uint32_t run_symbol(const std::string& update, const std::string& name, const std::string& source) {
  auto m = manifest(update);
  for (const auto& s : m["run_symbols"])
    if (s["name"] == name && (source.empty() || (s.contains("source") && s["source"] == source)))
      return s["index"];
  ADD_FAILURE() << "no run symbol " << name << " (" << source << ") in " << update;
  throw std::runtime_error("no run symbol");
}

ls::Context quiet_context() {
  ls::Context ctx;
  ctx.quiet = true;
  return ctx;
}

size_t index_of(const Requests& r, const std::string& name) {
  for (size_t i = 0; i < r.names.size(); ++i)
    if (r.names[i] == name) return i;
  ADD_FAILURE() << "no request for " << name;
  return 0;
}

BuiltWork::BuiltWork(const std::map<std::string, std::string>& files, const std::string& work_post) : p(files) {
  p.make();
  update = p.create("work.c", work_post);
  app = p / "app";
  syms = symbols(app);
  r = requests(update, syms, 0);
  work = index_of(r, "work");
  work_at = symbol(syms, "work");
}

ls::TargetAddr resolved(const ls::match::Match& m, uint32_t sym, ls::View view) {
  auto it = m.symbols.find({sym, view});
  EXPECT_NE(it, m.symbols.end()) << "no resolution for symbol " << sym << " (" << ls::to_string(view) << ")";
  return it == m.symbols.end() ? ls::TargetAddr() : it->second.value;
}

const ls::match::Resolution& resolution(const ls::match::Match& m, uint32_t sym, ls::View view) {
  auto it = m.symbols.find({sym, view});
  if (it == m.symbols.end()) {
    ADD_FAILURE() << "no resolution for symbol " << sym << " (" << ls::to_string(view) << ")";
    throw std::runtime_error("no resolution");
  }
  return it->second;
}

}  // namespace mt
