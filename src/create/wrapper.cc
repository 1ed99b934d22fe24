// livesplice-cc: the compiler wrapper `livesplice create` puts in front of the build.
//
// It does three things and then execs the real tool, so the build sees the real
// compiler's exit status, output and signals:
//   1. adds `-ffunction-sections -fdata-sections` (and `-g` when the command has no -g
//      option) to every compile, so each function and datum gets its own section for the
//      differ; -g never changes the generated code. Every other flag — Debian's
//      hardening flags included — stays exactly as the build set it; and, in the post
//      build, `-idirafter $LIVESPLICE_INCLUDE` (livesplice/patch.h, for hooks);
//   2. saves a copy of each output it is about to overwrite, the first time in a run
//      ($LIVESPLICE_BACKUP_DIR), and during the post build a second copy of each object
//      ($LIVESPLICE_PRE_DIR): that copy is the pre object create diffs against;
//   3. appends one JSON line per compile, link, archive or archive extraction to
//      $LIVESPLICE_RECORD.
//
// What is hard is finding the real tool without finding ourselves again. We are reached
// three ways: as a symlink named like the tool (cc, gcc-12, x86_64-linux-gnu-g++, ar)
// in a directory put first on PATH — the real tool is the next program of that name on
// PATH that does not resolve to this binary; as a launcher (`livesplice-cc /usr/bin/cc
// ARGS`, CMAKE_<LANG>_COMPILER_LAUNCHER) — argv[1] is the tool; or as CC itself — the
// tool is $LIVESPLICE_REAL_CC or `cc`. A nested call (a compiler driver that runs `gcc`
// again from PATH) sees $LIVESPLICE_ACTIVE and passes straight through.
//
// This program runs once per compile inside the user's build, so it uses only the C++
// standard library and POSIX, and never fails the build for a bookkeeping problem it
// can describe on stderr instead — except a failed backup: an output that cannot be
// saved could not be restored, so that stops the build.
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "livesplice-cc: %s\n", msg.c_str());
  std::exit(1);
}

std::string env_or(const char* name, const std::string& fallback = {}) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

std::string base_name(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.compare(0, std::strlen(prefix), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string real_path(const std::string& p) {
  char buf[PATH_MAX];
  return realpath(p.c_str(), buf) ? std::string(buf) : std::string();
}

std::string current_dir() {
  char buf[PATH_MAX];
  return getcwd(buf, sizeof buf) ? std::string(buf) : std::string(".");
}

// `cwd` + `p`, with . and .. folded lexically (no symlink resolution, like make does).
std::string absolute(const std::string& cwd, const std::string& p) {
  std::string joined = p.empty() || p[0] != '/' ? cwd + "/" + p : p;
  std::vector<std::string> parts;
  std::stringstream ss(joined);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (const auto& x : parts) out += "/" + x;
  return out.empty() ? "/" : out;
}

bool is_executable_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}

// The next `name` on PATH that is not this program.
std::string find_real(const std::string& name, const std::string& self) {
  if (name.find('/') != std::string::npos) return is_executable_file(name) ? name : std::string();
  std::stringstream ss(env_or("PATH", "/usr/bin:/bin"));
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (!is_executable_file(candidate)) continue;
    if (real_path(candidate) == self) continue;
    return candidate;
  }
  return {};
}

// ---- JSON output (a record line is all we write; no library needed) ----------------

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string json_array(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + json_string(v[i]);
  return out + "]";
}

// One line, one write(), under an exclusive lock: parallel jobs append to the same file.
void append_record(const std::string& line) {
  std::string path = env_or("LIVESPLICE_RECORD");
  if (path.empty()) return;
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "livesplice-cc: warning: cannot open %s: %s\n", path.c_str(), strerror(errno));
    return;
  }
  flock(fd, LOCK_EX);
  std::string data = line + "\n";
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
  flock(fd, LOCK_UN);
  close(fd);
}

// ---- saving outputs before they are overwritten -----------------------------------

void make_dirs(const std::string& dir) {
  std::string cur;
  std::stringstream ss(dir);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += "/" + part;
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) die("cannot create " + cur + ": " + strerror(errno));
  }
}

// Copies `src` (an existing regular file) to `dst` with its mode and timestamps, unless
// `dst` exists already. Atomic against a parallel job doing the same: the copy is made
// under a private name and published with link(), which fails if another won.
void save_copy(const std::string& src, const std::string& dst) {
  struct stat st;
  if (lstat(src.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
  if (access(dst.c_str(), F_OK) == 0) return;
  make_dirs(dst.substr(0, dst.rfind('/')));
  std::string tmp = dst + ".tmp." + std::to_string(getpid());
  int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) die("cannot read " + src + " to save it: " + strerror(errno));
  int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) die("cannot save " + src + ": " + tmp + ": " + strerror(errno));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("reading " + src + ": " + strerror(errno));
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) die("saving " + src + ": " + strerror(errno));
      off += w;
    }
  }
  close(in);
  fchmod(out, st.st_mode & 07777);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  futimens(out, times);
  if (close(out) != 0) die("saving " + src + ": " + strerror(errno));
  if (link(tmp.c_str(), dst.c_str()) != 0 && errno != EEXIST) die("saving " + src + ": " + strerror(errno));
  unlink(tmp.c_str());
}

void save_before_overwrite(const std::vector<std::string>& outputs, bool objects) {
  std::string backup = env_or("LIVESPLICE_BACKUP_DIR");
  std::string pre = env_or("LIVESPLICE_PRE_DIR");
  for (const auto& out : outputs) {
    if (!backup.empty()) save_copy(out, backup + "/files" + out);
    if (objects && !pre.empty()) save_copy(out, pre + out);
  }
}

// ---- reading a compiler command line ----------------------------------------------

// Options whose value is the next argument when not attached.
bool takes_separate_value(const std::string& a) {
  static const char* const kOpts[] = {
      "-o", "-x", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter",
      "-iprefix", "-iwithprefix", "-iwithprefixbefore", "-isysroot", "-imultilib", "-MF", "-MT",
      "-MQ", "-L", "-l", "-Xlinker", "-Xassembler", "-Xpreprocessor", "-Xclang", "-T", "-u", "-e",
      "-z", "-aux-info", "-dumpbase", "-dumpbase-ext", "-dumpdir", "-wrapper", "--param", "-B",
      "-target", "-arch", "--sysroot", "-G"};
  for (const char* o : kOpts)
    if (a == o) return true;
  return false;
}

enum class InputKind { Source, Object, Archive, Shared, Other };

InputKind classify(const std::string& path, const std::string& forced_lang) {
  if (!forced_lang.empty() && forced_lang != "none") return InputKind::Source;
  static const char* const kSources[] = {".c", ".cc", ".cpp", ".cxx", ".c++", ".C", ".cp", ".i",
                                         ".ii", ".s", ".S", ".sx", ".m", ".mm", ".M", ".CPP",
                                         ".f", ".F", ".f90", ".F90", ".go", ".d"};
  for (const char* s : kSources)
    if (ends_with(path, s)) return InputKind::Source;
  if (ends_with(path, ".o") || ends_with(path, ".lo") || ends_with(path, ".obj")) return InputKind::Object;
  if (ends_with(path, ".a")) return InputKind::Archive;
  if (ends_with(path, ".so") || path.find(".so.") != std::string::npos) return InputKind::Shared;
  return InputKind::Other;
}

// `@file` arguments hold more arguments, whitespace-separated with shell-like quoting.
void expand_response_file(const std::string& path, std::vector<std::string>& out, int depth) {
  std::ifstream in(path);
  if (!in || depth > 8) {
    out.push_back("@" + path);
    return;
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string cur;
  bool have = false;
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quote) {
      if (c == quote) quote = 0;
      else if (c == '\\' && quote == '"' && i + 1 < text.size()) cur += text[++i];
      else cur += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      have = true;
    } else if (c == '\\' && i + 1 < text.size()) {
      cur += text[++i];
      have = true;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      if (have) {
        if (cur[0] == '@') expand_response_file(cur.substr(1), out, depth + 1);
        else out.push_back(cur);
      }
      cur.clear();
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (have) {
    if (cur[0] == '@') expand_response_file(cur.substr(1), out, depth + 1);
    else out.push_back(cur);
  }
}

struct Command {
  bool compile = false;         // -c
  bool assemble_only = false;   // -S
  bool preprocess = false;      // -E, or -M/-MM without -MD/-MMD
  bool shared = false;
  bool relocatable = false;     // -r: a partial link, the output is an object again
  bool has_g = false;
  bool lto = false;
  std::string output;
  std::vector<std::string> sources, objects, archives, shared_libs, libs, libdirs;
  std::vector<std::string> dep_files;
  bool dep_default = false;     // -MD/-MMD without -MF: the file name is derived
};

Command parse_compiler_args(const std::vector<std::string>& raw, const std::string& cwd) {
  std::vector<std::string> args;
  for (const auto& a : raw) {
    if (a.size() > 1 && a[0] == '@') expand_response_file(a.substr(1), args, 0);
    else args.push_back(a);
  }
  Command c;
  bool dep_only = false, dep_md = false, explicit_mf = false;
  std::string lang;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](size_t prefix_len) -> std::string {
      if (a.size() > prefix_len) return a.substr(prefix_len);
      return i + 1 < args.size() ? args[++i] : std::string();
    };
    if (a == "-c") c.compile = true;
    else if (a == "-S") c.assemble_only = true;
    else if (a == "-E") c.preprocess = true;
    else if (a == "-M" || a == "-MM") dep_only = true;
    else if (a == "-MD" || a == "-MMD") dep_md = true;
    else if (a == "-shared") c.shared = true;
    else if (a == "-r") c.relocatable = true;
    else if (starts_with(a, "-flto") && a != "-flto=none") c.lto = true;
    else if (a == "-fno-lto") c.lto = false;
    else if (starts_with(a, "-g")) c.has_g = true;
    else if (starts_with(a, "-Wp,")) {
      // -Wp,-MD,file / -Wp,-MMD,file (the kernel's way of asking for a dep file)
      std::string rest = a.substr(4);
      auto comma = rest.find(',');
      std::string opt = rest.substr(0, comma);
      if ((opt == "-MD" || opt == "-MMD") && comma != std::string::npos) {
        c.dep_files.push_back(absolute(cwd, rest.substr(comma + 1)));
        explicit_mf = true;
      }
    } else if (starts_with(a, "-o")) c.output = value(2);
    else if (starts_with(a, "-MF")) {
      c.dep_files.push_back(absolute(cwd, value(3)));
      explicit_mf = true;
    } else if (starts_with(a, "-x")) lang = value(2);
    else if (starts_with(a, "-L")) c.libdirs.push_back(absolute(cwd, value(2)));
    else if (starts_with(a, "-l")) c.libs.push_back(value(2));
    else if (a == "-") {
      if (!lang.empty()) c.sources.push_back("-");
    } else if (a[0] == '-') {
      if (takes_separate_value(a)) ++i;
    } else {
      std::string p = absolute(cwd, a);
      switch (classify(a, lang)) {
        case InputKind::Source: c.sources.push_back(p); break;
        case InputKind::Object: c.objects.push_back(p); break;
        case InputKind::Archive: c.archives.push_back(p); break;
        case InputKind::Shared: c.shared_libs.push_back(p); break;
        case InputKind::Other: c.objects.push_back(p); break;   // linkers take any file
      }
    }
  }
  if (dep_only && !dep_md) c.preprocess = true;
  c.dep_default = dep_md && !explicit_mf;
  if (!c.output.empty()) c.output = absolute(cwd, c.output);
  return c;
}

std::string strip_suffix(const std::string& path) {
  auto slash = path.rfind('/');
  auto dot = path.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path;
  return path.substr(0, dot);
}

[[noreturn]] void exec_tool(const std::string& tool, const std::vector<std::string>& argv) {
  setenv("LIVESPLICE_ACTIVE", "1", 1);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  execv(tool.c_str(), cargv.data());
  die("cannot run " + tool + ": " + strerror(errno));
}

std::string record_head(const char* kind, const std::string& cwd, const std::string& tool,
                        const std::vector<std::string>& argv) {
  return std::string("{\"kind\":") + json_string(kind) + ",\"phase\":" +
         json_string(env_or("LIVESPLICE_PHASE")) + ",\"pid\":" + std::to_string(getpid()) +
         ",\"cwd\":" + json_string(cwd) + ",\"tool\":" + json_string(tool) +
         ",\"argv\":" + json_array(argv);
}

[[noreturn]] void run_compiler(const std::string& tool, std::vector<std::string> argv) {
  std::string cwd = current_dir();
  std::vector<std::string> args(argv.begin() + 1, argv.end());
  Command c = parse_compiler_args(args, cwd);
  bool compiles = !c.preprocess && (c.compile || c.assemble_only || !c.sources.empty());
  std::vector<std::string> exec_argv = argv;
  exec_argv[0] = tool;
  if (compiles) {
    exec_argv.push_back("-ffunction-sections");
    exec_argv.push_back("-fdata-sections");
    if (!c.has_g) exec_argv.push_back("-g");
    // The post build: livesplice/patch.h for a patch that declares hooks; after every
    // directory of the build's own, so that it shadows nothing.
    if (std::string include = env_or("LIVESPLICE_INCLUDE"); !include.empty()) {
      exec_argv.push_back("-idirafter");
      exec_argv.push_back(include);
    }
  }
  bool recording = !env_or("LIVESPLICE_RECORD").empty();

  if (recording && c.compile && !c.preprocess && !c.sources.empty()) {
    std::vector<std::string> outputs;
    if (!c.output.empty()) outputs.push_back(c.output);
    else
      for (const auto& s : c.sources) outputs.push_back(absolute(cwd, base_name(strip_suffix(s)) + ".o"));
    std::vector<std::string> deps = c.dep_files;
    if (c.dep_default)
      for (const auto& o : outputs) deps.push_back(strip_suffix(o) + ".d");
    save_before_overwrite(outputs, true);
    save_before_overwrite(deps, false);
    // One record per output: `cc -c a.c b.c` makes a.o and b.o.
    for (size_t i = 0; i < outputs.size(); ++i) {
      std::string source = outputs.size() == c.sources.size() ? c.sources[i] : c.sources[0];
      append_record(record_head("compile", cwd, tool, argv) + ",\"exec\":" + json_array(exec_argv) +
                    ",\"output\":" + json_string(outputs[i]) + ",\"source\":" + json_string(source) +
                    ",\"deps\":" + json_array(deps) + ",\"lto\":" + (c.lto ? "true" : "false") + "}");
    }
  } else if (recording && !c.compile && !c.assemble_only && !c.preprocess &&
             (!c.objects.empty() || !c.archives.empty() || !c.sources.empty())) {
    std::string output = c.output.empty() ? absolute(cwd, "a.out") : c.output;
    save_before_overwrite({output}, false);
    save_before_overwrite(c.dep_files, false);
    append_record(record_head("link", cwd, tool, argv) + ",\"output\":" + json_string(output) +
                  ",\"objects\":" + json_array(c.objects) + ",\"archives\":" + json_array(c.archives) +
                  ",\"shared_libs\":" + json_array(c.shared_libs) + ",\"libs\":" + json_array(c.libs) +
                  ",\"libdirs\":" + json_array(c.libdirs) + ",\"sources\":" + json_array(c.sources) +
                  ",\"shared\":" + (c.shared ? "true" : "false") +
                  ",\"relocatable\":" + (c.relocatable ? "true" : "false") + "}");
  }
  exec_tool(tool, exec_argv);
}

// `ar KEY[MODS] [RELPOS] [COUNT] ARCHIVE [MEMBERS...]`, and `ranlib ARCHIVE...`.
[[noreturn]] void run_archiver(const std::string& tool, const std::vector<std::string>& argv,
                               bool ranlib) {
  std::string cwd = current_dir();
  bool recording = !env_or("LIVESPLICE_RECORD").empty();
  if (recording && ranlib) {
    std::vector<std::string> archives;
    for (size_t i = 1; i < argv.size(); ++i)
      if (argv[i][0] != '-') archives.push_back(absolute(cwd, argv[i]));
    save_before_overwrite(archives, false);
  } else if (recording) {
    std::vector<std::string> rest;
    for (size_t i = 1; i < argv.size(); ++i) {
      if (argv[i] == "--plugin" || argv[i] == "--target" || argv[i] == "--output") {
        ++i;
        continue;
      }
      if (starts_with(argv[i], "--")) continue;
      rest.push_back(argv[i]);
    }
    if (!rest.empty()) {
      std::string key = rest[0][0] == '-' ? rest[0].substr(1) : rest[0];
      size_t next = 1;
      if (key.find_first_of("abi") != std::string::npos) ++next;
      if (key.find('N') != std::string::npos) ++next;
      bool modifies = key.find_first_of("rqdms") != std::string::npos;
      // libtool puts one convenience library into another by extracting its members
      // (`cd X.lax/libsub.a && ar x /abs/libsub.a`) and archiving those copies: where
      // they came from is what ties them back to the objects compiled.
      if (key.find('x') != std::string::npos && next < rest.size())
        append_record(record_head("extract", cwd, tool, argv) + ",\"archive\":" +
                      json_string(absolute(cwd, rest[next])) + "}");
      if (modifies && next < rest.size()) {
        std::string archive = absolute(cwd, rest[next]);
        std::vector<std::string> members;
        for (size_t i = next + 1; i < rest.size(); ++i) members.push_back(absolute(cwd, rest[i]));
        save_before_overwrite({archive}, false);
        if (key.find_first_of("rq") != std::string::npos)
          append_record(record_head("archive", cwd, tool, argv) + ",\"output\":" + json_string(archive) +
                        ",\"objects\":" + json_array(members) + "}");
      }
    }
  }
  std::vector<std::string> exec_argv = argv;
  exec_argv[0] = tool;
  exec_tool(tool, exec_argv);
}

bool is_archiver_name(const std::string& name, bool& ranlib) {
  ranlib = ends_with(name, "ranlib");
  return ranlib || name == "ar" || ends_with(name, "-ar");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  std::string self = real_path("/proc/self/exe");
  std::string invoked = base_name(args[0]);

  std::string tool;
  std::vector<std::string> tool_argv;
  if (invoked == "livesplice-cc") {
    // Launcher (`livesplice-cc /usr/bin/cc ARGS`) or CC=livesplice-cc.
    if (args.size() > 1 && args[1][0] != '-' && !find_real(args[1], self).empty() &&
        classify(args[1], "") == InputKind::Other) {
      tool = find_real(args[1], self);
      tool_argv.assign(args.begin() + 1, args.end());
    } else {
      std::string name = env_or("LIVESPLICE_REAL_CC", "cc");
      tool = find_real(name, self);
      tool_argv = args;
      tool_argv[0] = name;
    }
  } else {
    tool = find_real(invoked, self);
    tool_argv = args;
  }
  if (tool.empty()) die("cannot find the real '" + invoked + "' on PATH");

  if (!env_or("LIVESPLICE_ACTIVE").empty()) exec_tool(tool, [&] {
      auto a = tool_argv;
      a[0] = tool;
      return a;
    }());

  bool ranlib = false;
  if (is_archiver_name(base_name(tool_argv[0]), ranlib)) run_archiver(tool, tool_argv, ranlib);
  run_compiler(tool, tool_argv);
}
