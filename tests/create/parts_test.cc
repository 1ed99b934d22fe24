// The pieces create is made of, each on real programs: the process runner, the
// livesplice-cc wrapper (flags, records, saved copies, the three ways it is reached),
// the recompile command, object-to-binary mapping, the tree guard, and the patch
// parser.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <fmt/ranges.h>

#include "base/subprocess.h"
#include "create/build.h"
#include "create/patch.h"
#include "support.h"

namespace fs = std::filesystem;
using lstest::TempDir;

namespace {

std::vector<nlohmann::json> records(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

size_t count(const std::vector<std::string>& v, const std::string& x) {
  return static_cast<size_t>(std::count(v.begin(), v.end(), x));
}

void set_mtime(const std::string& path, time_t sec) {
  struct timespec t[2] = {{sec, 123456789}, {sec, 123456789}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), t, 0), 0);
}

int64_t mtime_ns(const std::string& path) {
  struct stat st;
  stat(path.c_str(), &st);
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

class Parts : public ::testing::Test {
 protected:
  void SetUp() override { lstest::require_tools({"gcc", "cc", "ar", "readelf"}); }
  ls::Context ctx;
};

}  // namespace

TEST_F(Parts, RunCapturesOutputStatusAndEnvironment) {
  TempDir d;
  ls::RunOptions o;
  o.cwd = d.path();
  o.env = {{"LS_TEST_VALUE", "forty two"}};
  ls::RunResult r = ls::run_shell("echo \"$LS_TEST_VALUE\" in \"$(pwd)\"; echo oops >&2; exit 7", o);
  EXPECT_EQ(r.status, 7);
  EXPECT_NE(r.output.find("forty two in " + d.path()), std::string::npos);
  EXPECT_NE(r.output.find("oops"), std::string::npos);
  EXPECT_EQ(ls::run_shell("kill -TERM $$").status, 128 + SIGTERM);
  EXPECT_THROW(ls::run({"no-such-program-livesplice"}), ls::Error);
  o.log_file = d / "log";
  ls::run_shell("echo one", o);
  ls::run_shell("echo two", o);
  EXPECT_EQ(lstest::read_file(d / "log"), "one\ntwo\n");
}

TEST_F(Parts, WrapperAddsSectionFlagsAndDebugInfoAndRecordsTheCompile) {
  TempDir d;
  lstest::write_file(d / "a.c", "int twice(int x) { return 2 * x; }\nint data = 5;\n");
  std::map<std::string, std::string> env = {{"LIVESPLICE_RECORD", d / "rec.jsonl"},
                                            {"LIVESPLICE_BACKUP_DIR", d / "saved"},
                                            {"LIVESPLICE_PHASE", "pre"}};
  // As a CMake compiler launcher: argv[1] is the compiler.
  auto r = lstest::run({lstest::livesplice_cc(), "gcc", "-O2", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2",
                        "-MMD", "-c", "a.c", "-o", "a.o"},
                       d.path(), env);
  ASSERT_EQ(r.status, 0) << r.err;
  auto sections = lstest::run({"readelf", "-SW", d / "a.o"}).out;
  EXPECT_NE(sections.find(".text.twice"), std::string::npos) << sections;
  EXPECT_NE(sections.find(".data.data"), std::string::npos) << sections;
  EXPECT_NE(sections.find(".debug_info"), std::string::npos) << "-g was not added";

  auto recs = records(d / "rec.jsonl");
  ASSERT_EQ(recs.size(), 1u);
  const auto& c = recs[0];
  EXPECT_EQ(c["kind"], "compile");
  EXPECT_EQ(c["phase"], "pre");
  EXPECT_EQ(c["cwd"], d.path());
  EXPECT_EQ(c["output"], d / "a.o");
  EXPECT_EQ(c["source"], d / "a.c");
  EXPECT_EQ(c["deps"], nlohmann::json::array({d / "a.d"}));
  auto exec = c["exec"].get<std::vector<std::string>>();
  EXPECT_EQ(count(exec, "-ffunction-sections"), 1u);
  EXPECT_EQ(count(exec, "-fdata-sections"), 1u);
  EXPECT_EQ(count(exec, "-g"), 1u);
  // The build's own flags are untouched, in order.
  auto argv = c["argv"].get<std::vector<std::string>>();
  EXPECT_EQ(argv, (std::vector<std::string>{"gcc", "-O2", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-MMD",
                                            "-c", "a.c", "-o", "a.o"}));
  EXPECT_EQ(std::vector<std::string>(exec.begin() + 1, exec.begin() + 9),
            std::vector<std::string>(argv.begin() + 1, argv.end()));

  // As CC itself: the real compiler is $LIVESPLICE_REAL_CC (default cc).
  auto cc_env = env;
  cc_env["LIVESPLICE_REAL_CC"] = "gcc";
  r = lstest::run({lstest::livesplice_cc(), "-c", "a.c", "-o", "c.o"}, d.path(), cc_env);
  ASSERT_EQ(r.status, 0) << r.err;
  recs = records(d / "rec.jsonl");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(fs::path(recs[1]["tool"].get<std::string>()).filename(), "gcc");
  EXPECT_EQ(recs[1]["output"], d / "c.o");

  // A command that has -g already gets no second one.
  r = lstest::run({lstest::livesplice_cc(), "gcc", "-g3", "-c", "a.c", "-o", "b.o"}, d.path(), env);
  ASSERT_EQ(r.status, 0) << r.err;
  recs = records(d / "rec.jsonl");
  ASSERT_EQ(recs.size(), 3u);
  exec = recs[2]["exec"].get<std::vector<std::string>>();
  EXPECT_EQ(count(exec, "-g"), 0u);
  EXPECT_EQ(count(exec, "-g3"), 1u);
}

TEST_F(Parts, WrapperSavesAnOutputOnceBeforeOverwritingIt) {
  TempDir d;
  lstest::write_file(d / "a.c", "int f(void) { return 1; }\n");
  std::map<std::string, std::string> env = {{"LIVESPLICE_RECORD", d / "rec.jsonl"},
                                            {"LIVESPLICE_BACKUP_DIR", d / "saved"},
                                            {"LIVESPLICE_PRE_DIR", d / "pre"}};
  ASSERT_EQ(lstest::run({"gcc", "-c", "a.c", "-o", "a.o"}, d.path()).status, 0);
  set_mtime(d / "a.o", 1000000000);
  std::string original = lstest::read_file(d / "a.o");

  ASSERT_EQ(lstest::run({lstest::livesplice_cc(), "gcc", "-O2", "-c", "a.c", "-o", "a.o"}, d.path(), env).status, 0);
  std::string saved = d.path() + "/saved/files" + d.path() + "/a.o";
  std::string pre = d.path() + "/pre" + d.path() + "/a.o";
  ASSERT_TRUE(fs::exists(saved));
  EXPECT_EQ(lstest::read_file(saved), original);
  EXPECT_EQ(mtime_ns(saved), 1000000000LL * 1000000000 + 123456789);
  EXPECT_EQ(lstest::read_file(pre), original);
  EXPECT_NE(lstest::read_file(d / "a.o"), original);

  // The second overwrite keeps the first copy: it is the state before the run.
  ASSERT_EQ(lstest::run({lstest::livesplice_cc(), "gcc", "-O1", "-c", "a.c", "-o", "a.o"}, d.path(), env).status, 0);
  EXPECT_EQ(lstest::read_file(saved), original);
  // Nothing is left over from making the copies.
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(d / "saved"))
    if (e.is_regular_file()) ++files;
  EXPECT_EQ(files, 1u);
}

TEST_F(Parts, WrapperReachedThroughPathSymlinksFindsTheRealToolsAndRecordsLinksAndArchives) {
  TempDir d;
  fs::create_directories(d / "bin");
  for (const char* name : {"gcc", "cc", "ar"}) fs::create_symlink(lstest::livesplice_cc(), d / "bin" + std::string("/") + name);
  lstest::write_file(d / "src/a.c", "int a(void) { return 1; }\n");
  lstest::write_file(d / "src/main.c", "int a(void);\nint main(void) { return a(); }\n");
  std::string path = d / "bin" + std::string(":") + getenv("PATH");
  std::map<std::string, std::string> env = {{"PATH", path}, {"LIVESPLICE_RECORD", d / "rec.jsonl"}};
  auto r = lstest::sh("export PATH='" + path + "' LIVESPLICE_RECORD='" + (d / "rec.jsonl") +
                          "'; cc -c src/a.c -o src/a.o && cc -c src/main.c && ar rcs liba.a src/a.o && "
                          "gcc -o prog main.o -L. -la",
                      d.path());
  ASSERT_EQ(r.status, 0) << r.err;
  auto recs = records(d / "rec.jsonl");
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs[0]["kind"], "compile");
  EXPECT_NE(recs[0]["tool"].get<std::string>().find("/cc"), std::string::npos);
  EXPECT_EQ(recs[0]["tool"].get<std::string>().find(d.path()), std::string::npos) << "found itself as the compiler";
  EXPECT_EQ(recs[1]["output"], d / "main.o");   // no -o: the object lands in the cwd
  EXPECT_EQ(recs[2]["kind"], "archive");
  EXPECT_EQ(recs[2]["output"], d / "liba.a");
  EXPECT_EQ(recs[2]["objects"], nlohmann::json::array({d / "src/a.o"}));
  EXPECT_EQ(recs[3]["kind"], "link");
  EXPECT_EQ(recs[3]["output"], d / "prog");
  EXPECT_EQ(recs[3]["libs"], nlohmann::json::array({"a"}));

  // The same records, read by create, put both objects in prog.
  ls::create::Records all;
  all.load(d / "rec.jsonl");
  auto bins = ls::create::map_objects_to_binaries(all);
  EXPECT_EQ(bins[d / "src/a.o"], std::vector<std::string>{d / "prog"});
  EXPECT_EQ(bins[d / "main.o"], std::vector<std::string>{d / "prog"});
}

TEST_F(Parts, ArchivesBuiltBehindTheWrappersBackAreReadForTheirMembers) {
  // CMake runs `ar` by absolute path: the archive is never recorded, its members are.
  TempDir d;
  lstest::write_file(d / "x/m.c", "int m(void) { return 3; }\n");
  lstest::write_file(d / "main.c", "int m(void);\nint main(void) { return m(); }\n");
  std::map<std::string, std::string> env = {{"LIVESPLICE_RECORD", d / "rec.jsonl"}};
  ASSERT_EQ(lstest::run({lstest::livesplice_cc(), "/usr/bin/cc", "-c", "x/m.c", "-o", "x/m.c.o"}, d.path(), env).status, 0);
  ASSERT_EQ(lstest::run({"/usr/bin/ar", "qc", "libm1.a", "x/m.c.o"}, d.path()).status, 0);
  ASSERT_EQ(lstest::run({lstest::livesplice_cc(), "/usr/bin/cc", "main.c", "libm1.a", "-o", "prog"}, d.path(), env).status, 0);
  ls::create::Records all;
  all.load(d / "rec.jsonl");
  ASSERT_EQ(all.links.size(), 1u);
  EXPECT_EQ(all.links[0].sources, std::vector<std::string>{d / "main.c"});
  auto bins = ls::create::map_objects_to_binaries(all);
  EXPECT_EQ(bins[d / "x/m.c.o"], std::vector<std::string>{d / "prog"});
}

TEST_F(Parts, RecompileCommandLeavesTheTreeAlone) {
  ls::create::CompileRecord rec;
  rec.tool = "/usr/bin/gcc";
  rec.exec = {"/usr/bin/gcc", "-Wp,-MMD,dir/.a.o.d", "-MD", "-MF", "a.d", "-MT", "a.o", "-MQ", "x", "-O2",
              "-c", "a.c", "-oa.o", "-MMD", "-MFb.d", "-ffunction-sections"};
  auto cmd = ls::create::recompile_command(rec, "/work/pre/a.o");
  EXPECT_EQ(cmd, (std::vector<std::string>{"/usr/bin/gcc", "-O2", "-c", "a.c", "-ffunction-sections", "-o",
                                           "/work/pre/a.o"}));
}

TEST_F(Parts, TreeGuardPutsBackContentTimesAndRemovesWhatWasCreated) {
  TempDir d;
  std::string root = d / "tree";
  lstest::write_file(root + "/keep.c", "keep\n");
  lstest::write_file(root + "/sub/patched.c", "before\n");
  lstest::write_file(root + "/sub/built.o", "old object\n");
  fs::create_symlink("keep.c", root + "/link");
  set_mtime(root + "/sub/patched.c", 1100000000);
  set_mtime(root + "/sub/built.o", 1200000000);
  set_mtime(root + "/sub", 1300000000);
  auto before = lstest::picture(root);
  {
    ls::create::TreeGuard guard(ctx, {root, d / "outside-build"}, d / "saved");
    guard.save(root + "/sub/patched.c");
    lstest::write_file(root + "/sub/patched.c", "after, longer\n");
    // What the wrapper does before the compiler overwrites an object.
    fs::create_directories(d.path() + "/saved/files" + root + "/sub");
    fs::copy_file(root + "/sub/built.o", d.path() + "/saved/files" + root + "/sub/built.o");
    struct stat st;
    stat((root + "/sub/built.o").c_str(), &st);
    struct timespec t[2] = {st.st_atim, st.st_mtim};
    utimensat(AT_FDCWD, (d.path() + "/saved/files" + root + "/sub/built.o").c_str(), t, 0);
    lstest::write_file(root + "/sub/built.o", "new object\n");
    lstest::write_file(root + "/sub/new.d", "dep\n");
    lstest::write_file(root + "/newdir/x.o", "x\n");
    fs::remove(root + "/link");
    fs::create_directories(d / "outside-build/CMakeFiles");
    lstest::write_file(d / "update.lsu", "the update\n");
    guard.exclude(d / "update.lsu");
    EXPECT_TRUE(guard.restore().empty());
  }
  EXPECT_EQ(lstest::compare(before, lstest::picture(root)), "");
  EXPECT_FALSE(fs::exists(d / "outside-build")) << "a build directory create made is removed";
  EXPECT_TRUE(fs::exists(d / "update.lsu"));
}

TEST_F(Parts, TreeGuardRestoresInItsDestructorAndNamesWhatItCannotRestore) {
  TempDir d;
  std::string root = d / "tree";
  lstest::write_file(root + "/a.c", "a\n");
  lstest::write_file(root + "/unsaved.txt", "u\n");
  set_mtime(root + "/unsaved.txt", 1000000000);
  auto before = lstest::picture(root);
  std::vector<std::string> left;
  {
    ls::create::TreeGuard guard(ctx, {root}, d / "saved");
    guard.save(root + "/a.c");
    lstest::write_file(root + "/a.c", "patched\n");
    lstest::write_file(root + "/unsaved.txt", "changed behind our back\n");
    lstest::write_file(root + "/junk", "j\n");
    try {
      throw std::runtime_error("a failing step");
    } catch (...) {
      // the guard goes out of scope while an error propagates
    }
  }
  auto after = lstest::picture(root);
  EXPECT_EQ(after.at("a.c"), before.at("a.c"));
  EXPECT_FALSE(after.count("junk"));
  EXPECT_NE(after.at("unsaved.txt"), before.at("unsaved.txt")) << "no copy existed; it cannot come back";
}

TEST_F(Parts, TreeGuardBringsBackFilesReplacedByRenameThroughItsHardLinks) {
  TempDir d;
  std::string root = d / "tree";
  lstest::write_file(root + "/foo.lo", "# libtool object, old\n");
  lstest::write_file(root + "/inplace.h", "old\n");
  set_mtime(root + "/foo.lo", 1000000000);
  set_mtime(root + "/inplace.h", 1000000000);
  auto before = lstest::picture(root);
  std::vector<std::string> left;
  {
    ls::create::TreeGuard guard(ctx, {root}, d / "saved", d / "links");
    // libtool writes foo.loT and moves it over foo.lo: the old inode survives in links/.
    lstest::write_file(root + "/foo.loT", "# libtool object, new and longer\n");
    fs::rename(root + "/foo.loT", root + "/foo.lo");
    // `echo > inplace.h` rewrites the inode itself: nothing survives.
    lstest::write_file(root + "/inplace.h", "new\n");
    left = guard.restore();
  }
  auto after = lstest::picture(root);
  EXPECT_EQ(after.at("foo.lo"), before.at("foo.lo"));
  EXPECT_EQ(left, std::vector<std::string>{root + "/inplace.h"});
}

// The files a patch touches, and the ones it may not: outside the tree however spelled
// (`..` alone was once accepted: found by the patch parser's fuzz target).
TEST(Patch, NamesItsFilesAndRefusesThoseOutsideTheTree) {
  auto p = ls::create::parse_patch("diff --git a/x.c b/y.c\nrename from x.c\nrename to y.c\n"
                                   "--- /dev/null\n+++ b/src/new.c\t2024-01-01\n@@ -0,0 +1 @@\n+int n;\n",
                                   "fix.patch");
  EXPECT_EQ(p.files, (std::vector<std::string>{"x.c", "y.c", "src/new.c"}));
  for (const char* outside : {"..", "../etc/passwd", "a/../..", "/etc/passwd", "src/../../x"}) {
    SCOPED_TRACE(outside);
    std::string text = fmt::format("--- a/{0}\n+++ b/{0}\n@@ -1 +1 @@\n-a\n+b\n", outside);
    try {
      auto q = ls::create::parse_patch(text, "fix.patch");
      ADD_FAILURE() << "accepted, files: " << fmt::format("{}", fmt::join(q.files, " "));
    } catch (const ls::Error& e) {
      EXPECT_NE(std::string(e.what()).find("fix.patch: patches"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("outside the source tree"), std::string::npos) << e.what();
    }
  }
}
