// The differ's source-pair cases. Every directory under cases/ is one source patch — pre/
// (C sources and headers), fix.patch (applies with `patch -p1` inside pre/) — and expect,
// the verdict `livesplice diff` must reach (format: README.md, expect.h).
//
// For every case and every build mode this copies pre/ twice, applies the patch to the
// second copy, compiles every .c of both with the real gcc the way a Debian package is
// built (-ffunction-sections -fdata-sections as `create` adds them, plus the hardening
// flags), runs the real livesplice binary on each object pair and checks its JSON. Each
// (case, mode) is its own test, e.g. Cases/DifferCase.Run/clone_cold_O2, and a failure
// prints the case, the mode, every broken expectation and the full JSON.
//
// Nothing is skipped: a missing gcc, patch or livesplice binary fails every test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "expect.h"

#ifndef LIVESPLICE_BIN
#error "LIVESPLICE_BIN (path of the livesplice binary) must be defined by the build"
#endif
#ifndef DIFFER_CASES_DIR
#error "DIFFER_CASES_DIR (path of tests/differ/cases) must be defined by the build"
#endif

namespace {

namespace fs = std::filesystem;
using ls::difftest::Expect;
using ls::difftest::ObjectResult;

struct Mode {
  std::string name;
  std::vector<std::string> flags;
};

// Debian's gcc builds PIE by default; say so explicitly so the modes do not depend on how
// the compiler was configured. _FORTIFY_SOURCE needs optimisation, so not at -O0.
const std::vector<Mode>& modes() {
  static const std::vector<Mode> m = {
      {"O0", {"-O0", "-fPIE"}},
      {"O2", {"-O2", "-fPIE", "-D_FORTIFY_SOURCE=2"}},
      {"O3", {"-O3", "-fPIE", "-D_FORTIFY_SOURCE=2"}},
      {"O2-nopie", {"-O2", "-fno-pie", "-D_FORTIFY_SOURCE=2"}},
  };
  return m;
}

const std::vector<std::string> kCommonFlags = {
    "-c", "-g", "-ffunction-sections", "-fdata-sections", "-fstack-protector-strong",
    "-fcf-protection"};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct RunResult {
  int status = -1;      // exit status; 128+N if killed by signal N; 127 if exec failed
  std::string out, err;
  std::string command;  // for messages
};

// Runs argv[0] (looked up on PATH) in `cwd`, its stdout and stderr captured through files
// in `scratch` (no pipes, so no deadlock on large output).
RunResult run(const std::vector<std::string>& argv, const fs::path& cwd, const fs::path& scratch) {
  RunResult r;
  for (const auto& a : argv) r.command += (r.command.empty() ? "" : " ") + a;
  static int serial = 0;
  const fs::path out_path = scratch / ("out." + std::to_string(++serial));
  const fs::path err_path = scratch / ("err." + std::to_string(serial));
  pid_t pid = fork();
  if (pid < 0) {
    r.err = std::string("fork: ") + strerror(errno);
    return r;
  }
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(126);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (chdir(cwd.c_str()) != 0) {
      dprintf(2, "chdir %s: %s\n", cwd.c_str(), strerror(errno));
      _exit(126);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    dprintf(2, "cannot run %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  int ws = 0;
  while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : -1;
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  fs::remove(out_path);
  fs::remove(err_path);
  return r;
}

// A fresh directory under $TMPDIR; removed on destruction unless keep() was called or
// LIVESPLICE_KEEP_WORK is set.
class WorkDir {
 public:
  WorkDir() {
    std::string tmpl = (fs::temp_directory_path() / "livesplice-differ-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp: " + std::string(strerror(errno)));
    path_ = tmpl;
    fs::create_directory(path_ / ".run");
  }
  ~WorkDir() {
    if (!keep_ && !std::getenv("LIVESPLICE_KEEP_WORK")) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path scratch() const { return path_ / ".run"; }
  void keep() { keep_ = true; }

 private:
  fs::path path_;
  bool keep_ = false;
};

// The tools every case needs, checked once: an empty string if all are there, else why not.
const std::string& missing_tools() {
  static const std::string why = [] {
    std::string w;
    WorkDir tmp;
    for (const char* tool : {"gcc", "patch"}) {
      auto r = run({tool, "--version"}, tmp.path(), tmp.scratch());
      if (r.status != 0)
        w += std::string(tool) + " cannot be run (" + r.err + "): the differ cases need the real " +
             tool + " on PATH.\n";
    }
    if (!fs::exists(LIVESPLICE_BIN))
      w += std::string("livesplice binary not found at ") + LIVESPLICE_BIN + " (build the 'livesplice' target).\n";
    return w;
  }();
  return why;
}

std::vector<std::string> list_cases() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(DIFFER_CASES_DIR, ec))
    if (e.is_directory()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Every .c under `dir`, as paths relative to it, sorted.
std::vector<std::string> c_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".c")
      out.push_back(fs::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

struct CaseMode {
  std::string name;
  std::string mode;
};

void PrintTo(const CaseMode& c, std::ostream* os) { *os << c.name << " @" << c.mode; }

std::vector<CaseMode> all_case_modes() {
  std::vector<CaseMode> out;
  for (const auto& c : list_cases())
    for (const auto& m : modes()) out.push_back({c, m.name});
  return out;
}

std::string test_name(const testing::TestParamInfo<CaseMode>& info) {
  std::string n = info.param.name + "_" + info.param.mode;
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

class DifferCase : public testing::TestWithParam<CaseMode> {};

TEST_P(DifferCase, Run) {
  const CaseMode& cm = GetParam();
  ASSERT_EQ(missing_tools(), "");
  const fs::path case_dir = fs::path(DIFFER_CASES_DIR) / cm.name;
  const Mode& mode = *std::find_if(modes().begin(), modes().end(),
                                   [&](const Mode& m) { return m.name == cm.mode; });

  const std::string expect_text = read_file(case_dir / "expect");
  Expect expect;
  try {
    expect = ls::difftest::parse_expect(expect_text);
  } catch (const std::exception& e) {
    FAIL() << cm.name << "/" << e.what();
  }

  WorkDir work;
  const fs::path pre = work.path() / "pre", post = work.path() / "post";
  fs::copy(case_dir / "pre", pre, fs::copy_options::recursive);
  fs::copy(case_dir / "pre", post, fs::copy_options::recursive);
  auto patched = run({"patch", "-p1", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-s", "-i",
                      fs::absolute(case_dir / "fix.patch").string()},
                     post, work.scratch());
  if (patched.status != 0) {
    work.keep();
    FAIL() << cm.name << ": fix.patch does not apply cleanly to pre/:\n" << patched.out << patched.err;
  }

  const auto sources = c_files(pre);
  if (sources != c_files(post)) {
    work.keep();
    FAIL() << cm.name << ": the patch adds or removes a .c file; cases compare the same files";
  }
  ASSERT_FALSE(sources.empty()) << cm.name << ": pre/ has no .c file";

  // Build both trees. The prefix map makes pre and post objects name the same directory,
  // as they do when `create` rebuilds one tree in place.
  std::vector<std::string> flags = kCommonFlags;
  flags.insert(flags.end(), mode.flags.begin(), mode.flags.end());
  for (const auto& f : expect.cflags()) flags.push_back(f);
  std::string build_log;
  for (const fs::path& tree : {pre, post}) {
    for (const auto& src : sources) {
      std::vector<std::string> argv = {"gcc"};
      argv.insert(argv.end(), flags.begin(), flags.end());
      argv.push_back("-ffile-prefix-map=" + tree.string() + "=.");
      argv.push_back(src);
      argv.push_back("-o");
      argv.push_back(fs::path(src).replace_extension(".o").string());
      auto r = run(argv, tree, work.scratch());
      build_log += "  (in " + tree.filename().string() + "/) " + r.command + "\n";
      if (r.status != 0) {
        work.keep();
        FAIL() << cm.name << " @" << cm.mode << ": gcc failed:\n" << r.command << "\n" << r.err;
      }
    }
  }

  std::vector<ObjectResult> results;
  std::vector<std::string> problems;
  std::string transcript;
  for (const auto& src : sources) {
    const std::string obj = fs::path(src).replace_extension(".o").string();
    auto r = run({LIVESPLICE_BIN, "diff", (pre / obj).string(), (post / obj).string(), "--json"},
                 work.path(), work.scratch());
    transcript += "\n== " + src + ": livesplice diff pre/" + obj + " post/" + obj +
                  " --json -> exit " + std::to_string(r.status) + "\n";
    ObjectResult res{src, r.status, {}};
    try {
      res.json = nlohmann::json::parse(r.out);
      transcript += res.json.dump(2) + "\n";
    } catch (const std::exception& e) {
      transcript += "stdout (not JSON: " + std::string(e.what()) + "):\n" + r.out + "\n";
      problems.push_back(src + ": stdout is not JSON");
    }
    if (!r.err.empty()) transcript += "stderr:\n" + r.err;
    if (r.status == 1 || r.status >= 4)
      problems.push_back(src + ": livesplice failed with exit status " + std::to_string(r.status));
    if (res.json.is_object()) results.push_back(std::move(res));
  }
  if (problems.empty()) problems = ls::difftest::check(expect, cm.mode, results);

  if (!problems.empty()) {
    work.keep();
    std::string list;
    for (const auto& p : problems) list += "  - " + p + "\n";
    ADD_FAILURE() << "case " << cm.name << ", mode " << cm.mode << ": " << expect.description
                  << "\n" << list << "\nexpect:\n" << expect_text << "\nbuild:\n" << build_log
                  << transcript << "\n(work directory kept: " << work.path().string() << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, DifferCase, testing::ValuesIn(all_case_modes()), test_name);

// The corpus itself: enough cases, each complete, FAIL cases expecting exit 2 and only
// they. Catches a mistyped expect file before anything is compiled.
TEST(DifferCorpus, WellFormed) {
  const auto cases = list_cases();
  EXPECT_GE(cases.size(), 30u) << "cases directory: " << DIFFER_CASES_DIR;
  for (const auto& name : cases) {
    const fs::path dir = fs::path(DIFFER_CASES_DIR) / name;
    SCOPED_TRACE(name);
    ASSERT_TRUE(fs::is_directory(dir / "pre")) << "no pre/";
    EXPECT_FALSE(c_files(dir / "pre").empty()) << "pre/ has no .c file";
    ASSERT_TRUE(fs::is_regular_file(dir / "fix.patch")) << "no fix.patch";
    EXPECT_GT(fs::file_size(dir / "fix.patch"), 0u) << "empty fix.patch";
    ASSERT_TRUE(fs::is_regular_file(dir / "expect")) << "no expect";
    Expect e;
    try {
      e = ls::difftest::parse_expect(read_file(dir / "expect"));
    } catch (const std::exception& ex) {
      ADD_FAILURE() << ex.what();
      continue;
    }
    const bool fail_case = name.find("FAIL") != std::string::npos;
    for (const auto& m : modes()) {
      bool refused = false;
      for (const auto& src : c_files(dir / "pre")) {
        int code = e.exit_for(m.name, src);
        EXPECT_NE(code, -1) << "no exit line for " << src << " @" << m.name;
        refused = refused || code == 2;
      }
      EXPECT_EQ(refused, fail_case) << "@" << m.name << ": a case expects exit 2 for some object "
                                    << "if and only if 'FAIL' is in its name";
    }
  }
}

}  // namespace
