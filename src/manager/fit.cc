// Reading what every process maps, and which updates fit it (see fit.h).
#include "manager/fit.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "process/ledger.h"
#include "process/maps.h"

namespace ls::manager {

namespace {

// The GNU build-id note of the ELF file open as `fd`, from its program headers (what a
// loaded binary keeps: sections may be stripped); "" when it has none.
std::string build_id_of(int fd) {
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  std::string id;
  size_t phnum = 0;
  if (elf && elf_kind(elf) == ELF_K_ELF && elf_getphdrnum(elf, &phnum) == 0) {
    for (size_t i = 0; i < phnum && id.empty(); ++i) {
      GElf_Phdr ph;
      if (!gelf_getphdr(elf, static_cast<int>(i), &ph) || ph.p_type != PT_NOTE) continue;
      Elf_Data* d = elf_getdata_rawchunk(elf, static_cast<int64_t>(ph.p_offset), ph.p_filesz, ELF_T_NHDR);
      size_t off = 0, name_off = 0, desc_off = 0;
      GElf_Nhdr nh;
      while (d && (off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
        if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 ||
            std::memcmp(static_cast<char*>(d->d_buf) + name_off, "GNU", 4) != 0)
          continue;
        const auto* bytes = static_cast<const uint8_t*>(d->d_buf) + desc_off;
        for (size_t k = 0; k < nh.n_descsz; ++k) id += fmt::format("{:02x}", bytes[k]);
        break;
      }
    }
  }
  if (elf) elf_end(elf);
  return id;
}

// A file is known by its path and inode: the same library mapped by a hundred processes
// is opened once.
using BuildIds = std::map<std::pair<std::string, uint64_t>, std::string>;

std::vector<MappedBinary> binaries_of(Context& ctx, pid_t pid, const std::vector<proc::Mapping>& maps, BuildIds& known) {
  // Only files mapped executable are binaries; data files (locales, fonts) are not, nor
  // memfds (livesplice's own new code, a JIT's), which are always "deleted".
  std::set<std::pair<std::string, uint64_t>> code;
  for (const auto& m : maps)
    if (m.file_backed() && m.exec && !m.path.starts_with("/memfd:")) code.emplace(m.path, m.inode);
  std::vector<MappedBinary> out;
  for (const auto& m : maps) {
    auto key = std::make_pair(m.path, m.inode);
    if (!m.file_backed() || !code.erase(key)) continue;   // not code, or seen already
    auto cached = known.find(key);
    if (cached == known.end()) {
      // The first mapping of a file starts at its lowest offset: the ELF header is there.
      std::string via = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.range.start.value(), m.range.end.value());
      int fd = ::open(via.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        ctx.note(fmt::format("process {}: cannot open {} ({}): {} left out", pid, via, std::strerror(errno), m.path));
        continue;
      }
      cached = known.emplace(key, build_id_of(fd)).first;
      ::close(fd);
    }
    out.push_back({m.path, std::filesystem::path(m.path).filename().string(), cached->second, m.deleted});
  }
  return out;
}

std::string read_comm(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/comm", pid));
  std::string comm;
  std::getline(in, comm);
  return comm;
}

}  // namespace

namespace {

std::optional<RunningProcess> read_process(Context& ctx, pid_t pid, BuildIds& known) {
  auto maps = proc::read_maps(pid);
  if (!maps) {
    ctx.note(fmt::format("{}: left out", maps.status().message()));
    return std::nullopt;
  }
  if (maps->empty()) return std::nullopt;   // a kernel thread
  auto key = proc::process_key(pid);
  if (!key) return std::nullopt;            // ended meanwhile
  RunningProcess p;
  p.pid = pid;
  p.start_time = key->start_time;
  p.command = read_comm(pid);
  p.binaries = binaries_of(ctx, pid, *maps, known);
  return p;
}

}  // namespace

std::vector<RunningProcess> scan_processes(Context& ctx) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) pids.push_back(std::stoi(name));
  }
  std::sort(pids.begin(), pids.end());
  BuildIds known;
  std::vector<RunningProcess> out;
  for (pid_t pid : pids)
    if (pid != ::getpid())
      if (auto p = read_process(ctx, pid, known)) out.push_back(std::move(*p));
  return out;
}

std::optional<RunningProcess> scan_process(Context& ctx, pid_t pid) {
  BuildIds known;
  return read_process(ctx, pid, known);
}

std::string build_id_of_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string id = build_id_of(fd);
  ::close(fd);
  return id;
}

std::vector<Fit> fits(const update::Manifest& m, const RunningProcess& p) {
  std::vector<Fit> out;
  if (m.kernel) return out;
  for (const auto& t : m.targets) {
    if (t.kind != "executable" && t.kind != "shared-library") continue;
    for (const auto& b : p.binaries) {
      if (!t.build_id.empty() && b.build_id == t.build_id) {
        out.push_back({t.name, &b, false});
        break;
      }
      if (t.original_build_id.empty() && b.name == t.name) {
        out.push_back({t.name, &b, true});
        break;
      }
    }
  }
  return out;
}

}  // namespace ls::manager
