#include "support.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

namespace fs = std::filesystem;

namespace lstest {

TempDir::TempDir() {
  const char* tmp = getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/livesplice-test.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = fs::canonical(buf.data()).string();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& content, bool executable) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (executable) fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                            fs::perms::others_read | fs::perms::others_exec);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Result run(const std::vector<std::string>& argv, const std::string& cwd,
           const std::map<std::string, std::string>& env) {
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    close(out[1]);
    close(err[1]);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(127);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  Result r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int st = 0;
  waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

Result sh(const std::string& command, const std::string& cwd) { return run({"/bin/sh", "-c", command}, cwd); }

void require_tools(const std::vector<std::string>& tools) {
  for (const auto& t : tools) {
    Result r = sh("command -v " + t);
    if (r.status != 0) FAIL() << "required tool '" << t << "' is not installed; these tests need it (never skipped)";
  }
}

std::string livesplice() { return LIVESPLICE_BIN; }
std::string livesplice_cc() { return LIVESPLICE_CC_BIN; }

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

void scan(const std::string& root, const std::string& path, Picture& out) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  Entry e;
  e.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  e.mode = st.st_mode & 07777;
  if (S_ISDIR(st.st_mode)) {
    e.type = 'd';
  } else if (S_ISLNK(st.st_mode)) {
    e.type = 'l';
    e.link = fs::read_symlink(path).string();
  } else {
    e.type = 'f';
    e.size = static_cast<uint64_t>(st.st_size);
    e.hash = fnv1a(read_file(path));
  }
  out[path == root ? "." : path.substr(root.size() + 1)] = e;
  if (e.type == 'd') {
    for (const auto& child : fs::directory_iterator(path)) scan(root, child.path().string(), out);
  }
}

std::string describe(const Entry& e) {
  std::ostringstream s;
  s << e.type << " size=" << e.size << " mtime=" << e.mtime_ns << " mode=" << std::oct << e.mode << std::dec
    << " hash=" << std::hex << e.hash;
  return s.str();
}

}  // namespace

Picture picture(const std::string& root) {
  Picture p;
  if (fs::exists(root)) scan(root, root, p);
  return p;
}

std::string compare(const Picture& before, const Picture& after) {
  std::string out;
  for (const auto& [path, e] : before) {
    auto it = after.find(path);
    if (it == after.end()) out += "  removed: " + path + "\n";
    else if (!(it->second == e))
      out += "  changed: " + path + "\n      before " + describe(e) + "\n      after  " + describe(it->second) + "\n";
  }
  for (const auto& [path, e] : after)
    if (!before.count(path)) out += "  created: " + path + "\n";
  return out;
}

std::string readelf_build_id(const std::string& binary) {
  Result r = run({"readelf", "-n", binary});
  std::smatch m;
  static const std::regex kId(R"(Build ID: ([0-9a-f]+))");
  if (std::regex_search(r.out, m, kId)) return m[1];
  return {};
}

}  // namespace lstest
