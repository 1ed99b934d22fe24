// `livesplice create` end to end: the real binary on real make, CMake and configure
// projects (projects/*), each from a tree built before create and from a clean tree, and
// the ways it must fail. After every run — success, refusal, error or Ctrl-C — the tree
// must be byte for byte and mtime for mtime as it was: every entry is hashed and stat'ed
// before and after.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "support.h"

namespace fs = std::filesystem;
using lstest::TempDir;
using Json = nlohmann::json;

namespace {

std::string project_dir(const std::string& name) { return std::string(CREATE_PROJECTS_DIR) + "/" + name; }
std::string patch_file(const std::string& project, const std::string& name) {
  return project_dir(project) + ".patches/" + name;
}

class Create : public ::testing::Test {
 protected:
  void SetUp() override { lstest::require_tools({"gcc", "cc", "make", "cmake", "patch", "readelf", "ar"}); }

  std::string src() const { return tmp / "src"; }
  std::string build() const { return tmp / "build"; }
  std::string update() const { return tmp / "fix.lsu"; }

  void copy_project(const std::string& name) {
    fs::copy(project_dir(name), src(), fs::copy_options::recursive);
  }
  void run_ok(const std::vector<std::string>& argv, const std::string& cwd) {
    auto r = lstest::run(argv, cwd);
    ASSERT_EQ(r.status, 0) << r.out << r.err;
  }
  lstest::Picture picture() const {
    lstest::Picture p;
    for (const auto& [k, v] : lstest::picture(src())) p["src/" + k] = v;
    for (const auto& [k, v] : lstest::picture(build())) p["build/" + k] = v;
    return p;
  }
  std::vector<std::string> create_args(const std::string& patch, std::vector<std::string> extra = {}) const {
    std::vector<std::string> a = {lstest::livesplice(), "create", "--source", src(), "--patch", patch, "-o", update()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  lstest::Result create(const std::string& patch, std::vector<std::string> extra = {}) const {
    return lstest::run(create_args(patch, std::move(extra)));
  }

  // Checks the update against `functions` (name -> the binary it must belong to) and
  // `build_ids` (binary -> the build-id readelf printed before create; "" when the tree
  // was clean and the build-id must be the pre build's).
  void expect_update(const std::map<std::string, std::string>& functions,
                     const std::map<std::string, std::string>& build_ids) {
    ASSERT_TRUE(fs::exists(update()));
    auto sections = lstest::run({"readelf", "-SW", update()});
    ASSERT_EQ(sections.status, 0) << sections.err;
    auto symbols = lstest::run({"readelf", "-sW", update()}).out;
    for (const auto& [fn, bin] : functions) {
      EXPECT_NE(sections.out.find(".livesplice.pre.text." + fn + " "), std::string::npos) << fn << sections.out;
      EXPECT_NE(sections.out.find(".livesplice.post.text." + fn + " "), std::string::npos) << fn << sections.out;
      size_t defs = 0;
      for (size_t at = 0; (at = symbols.find(" FUNC ", at)) != std::string::npos; ++at) {
        size_t eol = symbols.find('\n', at);
        if (symbols.substr(at, eol - at).ends_with(" " + fn)) ++defs;
      }
      EXPECT_EQ(defs, 2u) << fn << ": a pre and a post definition\n" << symbols;
    }

    auto info = lstest::run({lstest::livesplice(), "info", "--json", update()});
    ASSERT_EQ(info.status, 0) << info.err;
    Json m = Json::parse(info.out);
    std::map<std::string, std::string> got;
    for (const auto& f : m["functions"]) {
      if (!f["parent"].is_null()) continue;
      EXPECT_EQ(f["status"], "changed") << f.dump();
      const auto& obj = m["objects"][f["object"].get<size_t>()];
      ASSERT_EQ(obj["targets"].size(), 1u) << obj.dump();
      got[f["name"]] = m["targets"][obj["targets"][0].get<size_t>()]["name"];
    }
    EXPECT_EQ(got, functions);
    for (const auto& t : m["targets"]) {
      auto want = build_ids.find(t["name"]);
      ASSERT_NE(want, build_ids.end()) << t.dump();
      if (want->second.empty()) {
        EXPECT_TRUE(t["original_build_id"].is_null()) << t.dump();
        EXPECT_TRUE(t["build_id"].is_string() && !t["build_id"].get<std::string>().empty()) << t.dump();
        EXPECT_EQ(t["build_id"], t["pre_build_id"]);
      } else {
        EXPECT_EQ(t["build_id"], want->second) << t.dump();
        EXPECT_EQ(t["original_build_id"], want->second);
      }
    }
    EXPECT_FALSE(m["patch"]["text"].get<std::string>().empty());
  }

  void expect_tree_unchanged(const lstest::Picture& before) {
    EXPECT_EQ(lstest::compare(before, picture()), "") << "the tree was not restored";
  }

  TempDir tmp;
};

const std::map<std::string, std::string> kCalcFunctions = {{"calc_mul", "calc"}, {"calc_format", "libcalcfmt.so"}};

// Starts create in the background, waits for `marker` to appear (the build command
// creates it when it reaches the point to interrupt), sends SIGINT, and returns the
// wait status.
int interrupt_create(const std::vector<std::string>& argv, const std::string& marker, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = freopen(log.c_str(), "w", stderr);
    (void)f;
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  int status = 0;
  while (!fs::exists(marker)) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      ADD_FAILURE() << "create ended before reaching the marker:\n" << lstest::read_file(log);
      return status;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "the build never reached the marker";
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto sent = std::chrono::steady_clock::now();
  kill(pid, SIGINT);
  waitpid(pid, &status, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - sent, std::chrono::seconds(20)) << "create did not stop promptly";
  return status;
}

}  // namespace

TEST_F(Create, MakeProjectBuiltBeforeCreate) {
  copy_project("calc-make");
  run_ok({"make"}, src());
  std::map<std::string, std::string> ids = {{"calc", lstest::readelf_build_id(src() + "/calc")},
                                            {"libcalcfmt.so", lstest::readelf_build_id(src() + "/libcalcfmt.so")}};
  ASSERT_FALSE(ids["calc"].empty());
  auto before = picture();

  auto r = create(patch_file("calc-make", "fix.patch"), {"--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  Json summary = Json::parse(r.out);
  EXPECT_EQ(summary["result"], "ok");
  EXPECT_EQ(summary["objects_rebuilt"], 2);
  EXPECT_EQ(summary["functions_changed"], 2);
  EXPECT_EQ(summary["tree_restored"], true);
  EXPECT_NE(r.err.find("building pre (make)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("post build: 2 objects rebuilt"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("recompiling 2 pre objects"), std::string::npos) << r.err;
  expect_update(kCalcFunctions, ids);
  expect_tree_unchanged(before);
}

TEST_F(Create, MakeProjectFromACleanTree) {
  copy_project("calc-make");
  auto before = picture();
  auto r = create(patch_file("calc-make", "fix.patch"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("pre build: 5 objects compiled, 2 linked"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("recompiling"), std::string::npos) << "pre objects come from this run's pre build";
  expect_update(kCalcFunctions, {{"calc", ""}, {"libcalcfmt.so", ""}});
  expect_tree_unchanged(before);
}

// libtool builds each source twice, PIC for the shared library and plain for a static
// archive nothing in the build links. The archived copy cannot be running anywhere the
// update names, so it is left out (saying so), and its function is in the update once.
TEST_F(Create, ObjectOnlyArchivedIsLeftOutOfTheUpdate) {
  copy_project("calc-make");
  {
    std::ofstream mk(src() + "/Makefile", std::ios::app);
    mk << "\nlibcalcfmt.a: src/fmt.o\n\t$(AR) rcs $@ $^\n";
  }
  auto r = create(patch_file("calc-make", "fix.patch"), {"--json", "--build-cmd", "make all libcalcfmt.a"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("src/fmt.o: left out of the update: no binary of this build links it (it went only into "
                       "libcalcfmt.a)"),
            std::string::npos)
      << r.err;
  Json summary = Json::parse(r.out);
  std::multiset<std::string> objects;
  for (const auto& f : summary["functions"]) objects.insert(f["object"].get<std::string>());
  EXPECT_EQ(objects, (std::multiset<std::string>{"src/fmt.pic.o", "src/ops.o"})) << summary.dump(2);
  expect_update(kCalcFunctions, {{"calc", ""}, {"libcalcfmt.so", ""}});
}

TEST_F(Create, CMakeProjectBuiltOutOfTree) {
  copy_project("shapes-cmake");
  run_ok({"cmake", "-S", src(), "-B", build(), "-DCMAKE_BUILD_TYPE=RelWithDebInfo"}, tmp.path());
  run_ok({"cmake", "--build", build()}, tmp.path());
  std::map<std::string, std::string> ids = {{"shapes", lstest::readelf_build_id(build() + "/shapes")},
                                            {"libgreet.so", lstest::readelf_build_id(build() + "/libgreet.so")}};
  auto before = picture();
  auto r = create(patch_file("shapes-cmake", "fix.patch"), {"--build-dir", build()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("building pre (cmake)"), std::string::npos) << r.err;
  expect_update({{"area_rect", "shapes"}, {"greet", "libgreet.so"}}, ids);
  expect_tree_unchanged(before);
}

TEST_F(Create, CMakeProjectFromACleanTree) {
  copy_project("shapes-cmake");
  auto before = picture();
  ASSERT_FALSE(fs::exists(build()));
  auto r = create(patch_file("shapes-cmake", "fix.patch"), {"--build-dir", build()});
  ASSERT_EQ(r.status, 0) << r.err;
  expect_update({{"area_rect", "shapes"}, {"greet", "libgreet.so"}}, {{"shapes", ""}, {"libgreet.so", ""}});
  expect_tree_unchanged(before);
  EXPECT_FALSE(fs::exists(build())) << "the build directory create configured is removed";
}

TEST_F(Create, ConfigureProjectFromACleanTree) {
  copy_project("kv-configure");
  auto before = picture();
  auto r = create(patch_file("kv-configure", "fix.patch"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("building pre (configure+make)"), std::string::npos) << r.err;
  expect_update({{"kv_get", "kv"}}, {{"kv", ""}});
  expect_tree_unchanged(before);
}

TEST_F(Create, ConfigureProjectBuiltBeforeCreate) {
  copy_project("kv-configure");
  run_ok({"./configure"}, src());
  run_ok({"make"}, src());
  std::string id = lstest::readelf_build_id(src() + "/kv");
  auto before = picture();
  auto r = create(patch_file("kv-configure", "fix.patch"));
  ASSERT_EQ(r.status, 0) << r.err;
  expect_update({{"kv_get", "kv"}}, {{"kv", id}});
  expect_tree_unchanged(before);
}

TEST_F(Create, PatchThatDoesNotApplyTouchesNothing) {
  copy_project("calc-make");
  run_ok({"make"}, src());
  auto before = picture();
  auto r = create(patch_file("calc-make", "stale.patch"));
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("does not apply"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("src/ops.c: hunk #1 FAILED"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(update()));
  expect_tree_unchanged(before);
}

TEST_F(Create, BuildFailingAfterThePatchRestoresTheTree) {
  copy_project("calc-make");
  run_ok({"make"}, src());
  auto before = picture();
  auto r = create(patch_file("calc-make", "broken.patch"));
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("post build failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ops.c"), std::string::npos) << "the compiler's complaint is quoted\n" << r.err;
  EXPECT_FALSE(fs::exists(update()));
  expect_tree_unchanged(before);
}

TEST_F(Create, UnsafePatchIsRefusedNamingSymbolAndObject) {
  copy_project("calc-make");
  run_ok({"make"}, src());
  auto before = picture();
  auto r = create(patch_file("calc-make", "unsafe.patch"));
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("src/table.o: calc_limit: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("initial value"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(update()));
  expect_tree_unchanged(before);
}

// The refusal names the copy that runs, not also libtool's archived-only one.
TEST_F(Create, UnsafeVerdictOfAnArchivedOnlyCopyIsNotRepeated) {
  copy_project("calc-make");
  {
    std::ofstream mk(src() + "/Makefile", std::ios::app);
    mk << "\nlibtablepic.a: src/table.pic.o\n\t$(AR) rcs $@ $^\n";
  }
  auto r = create(patch_file("calc-make", "unsafe.patch"), {"--build-cmd", "make all libtablepic.a"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("src/table.o: calc_limit: "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("src/table.pic.o"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(update()));
}

TEST_F(Create, CommentOnlyPatchIsNoChange) {
  copy_project("calc-make");
  auto before = picture();
  auto r = create(patch_file("calc-make", "comment.patch"), {"--json"});
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_EQ(Json::parse(r.out)["result"], "no-change");
  EXPECT_NE(r.err.find("no change"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(update()));
  expect_tree_unchanged(before);
}

// The patched file is compiled, but its conditionals leave no code in this
// configuration: no change, and the object is named as one without code.
TEST_F(Create, PatchOfCodeNotBuiltHereIsNoChangeNamingTheEmptyObject) {
  copy_project("calc-make");
  run_ok({"make"}, src());
  auto before = picture();
  auto r = create(patch_file("calc-make", "legacy.patch"), {"--json"});
  EXPECT_EQ(r.status, 3) << r.err;
  Json j = Json::parse(r.out);
  EXPECT_EQ(j["result"], "no-change");
  EXPECT_EQ(j["objects_without_code"], Json::array({"src/legacy.o"})) << j.dump(2);
  EXPECT_NE(r.err.find("src/legacy.o: no code before or after the patch"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(update()));
  expect_tree_unchanged(before);
}

TEST_F(Create, InterruptedDuringThePostBuildRestoresTheTree) {
  copy_project("calc-make");
  run_ok({"make"}, src());
  auto before = picture();
  std::string marker = tmp / "post-build-reached";
  // The post build hangs after compiling, with the patched sources and rebuilt objects
  // in the tree: the worst moment to be interrupted.
  std::string cmd = "make && if [ \"$LIVESPLICE_PHASE\" = post ]; then touch '" + marker + "'; sleep 60; fi";
  int status = interrupt_create(create_args(patch_file("calc-make", "fix.patch"), {"--build-cmd", cmd}), marker,
                                tmp / "create.log");
  std::string log = lstest::read_file(tmp / "create.log");
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << "status " << status << "\n" << log;
  EXPECT_NE(log.find("interrupted by SIGINT"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(update()));
  expect_tree_unchanged(before);
}

TEST_F(Create, InterruptedDuringThePreBuildOfACleanTreeRemovesWhatItBuilt) {
  copy_project("calc-make");
  auto before = picture();
  std::string marker = tmp / "pre-build-reached";
  std::string cmd = "if [ \"$LIVESPLICE_PHASE\" = pre ]; then make src/main.o src/ops.o && touch '" + marker +
                    "' && sleep 60; fi; make";
  int status = interrupt_create(create_args(patch_file("calc-make", "fix.patch"), {"--build-cmd", cmd}), marker,
                                tmp / "create.log");
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << lstest::read_file(tmp / "create.log");
  expect_tree_unchanged(before);
}

TEST_F(Create, InterruptedBuildThatIgnoresSigintIsStoppedAnyway) {
  copy_project("calc-make");
  run_ok({"make"}, src());
  auto before = picture();
  std::string marker = tmp / "post-build-reached";
  // A build that shrugs off SIGINT is sent SIGTERM, then SIGKILL.
  std::string cmd = "trap '' INT; make && if [ \"$LIVESPLICE_PHASE\" = post ]; then touch '" + marker +
                    "'; sleep 60; fi";
  auto start = std::chrono::steady_clock::now();
  int status = interrupt_create(create_args(patch_file("calc-make", "fix.patch"), {"--build-cmd", cmd}), marker,
                                tmp / "create.log");
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << lstest::read_file(tmp / "create.log");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(50));
  expect_tree_unchanged(before);
}

// ---- builds that write files the tree ships -----------------------------------------
// hello-regen's build rewrites files the tree ships besides the compiler's outputs, the
// way Debian's dnsmasq (its catalogue), busybox (kbuild's .*.cmd files, a touched
// marker) and openssh (all its man pages for one patched page) do; see its Makefile.
// The tree is built first, so that create's post build rewrites files already there.
class CreateRegen : public Create {
 protected:
  void SetUp() override {
    Create::SetUp();
    copy_project("hello-regen");
    run_ok({"make"}, src());
    id = lstest::readelf_build_id(src() + "/hello");
  }
  std::string patch(const std::string& name) const { return patch_file("hello-regen", name); }
  void expect_good_update(const lstest::Result& r) {
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
    expect_update({{"greeting", "hello"}}, {{"hello", id}});
  }
  // create with `build_cmd` ("": make) succeeds, warns of nothing, and leaves the tree
  // as it found it.
  void expect_tree_back(const std::string& patch_name, const std::string& build_cmd) {
    auto before = picture();
    std::vector<std::string> extra;
    if (!build_cmd.empty()) extra = {"--build-cmd", build_cmd};
    expect_good_update(create(patch(patch_name), extra));
    expect_tree_unchanged(before);
  }
  std::string id;
};

TEST_F(CreateRegen, CatalogueRegeneratedInPlaceAndTouchedMarkerComeBack) {
  expect_tree_back("greet.patch", "make hello po/hello.pot include/config/MARKER");
}

TEST_F(CreateRegen, KbuildCommandFilesRewrittenBesideEachObjectComeBack) {
  expect_tree_back("greet.patch", "make hello");
}

TEST_F(CreateRegen, EveryManPageRewrittenForOnePatchedPageComesBack) { expect_tree_back("page.patch", ""); }

TEST_F(CreateRegen, FilesReplacedByRenameRemovedOrCreatedComeBack) {
  expect_tree_back("greet.patch", "make hello BUILDINFO include/build.h po/stamp");
}

// Without the overlay, hard links bring back what the build replaced by rename, but not
// what it rewrote in place: the update is still good, so create succeeds, naming those.
TEST_F(CreateRegen, InPlaceBuildNamesWhatItCouldNotRestoreAndSucceeds) {
  auto before = picture();
  auto r = create(patch("page.patch"), {"--in-place", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  expect_update({{"greeting", "hello"}}, {{"hello", id}});
  Json summary = Json::parse(r.out);
  EXPECT_EQ(summary["tree_restored"], false);
  std::set<std::string> want = {src() + "/po/hello.pot", src() + "/src/.greet.o.cmd",
                                src() + "/include/config/MARKER"};
  for (int i = 1; i <= 15; ++i) want.insert(fmt::format("{}/doc/hello-{}.1.out", src(), i));
  EXPECT_EQ(summary["tree_not_restored"].get<std::set<std::string>>(), want) << r.err;
  EXPECT_NE(r.err.find("warning: the update is written, but 18 paths in the tree could not be restored"),
            std::string::npos)
      << r.err;
  lstest::Picture after = picture();
  for (const char* renamed : {"src/BUILDINFO", "src/include/build.h", "src/po/stamp", "src/src/greet.o", "src/hello"})
    EXPECT_EQ(after.at(renamed), before.at(renamed)) << renamed;
}

// An overlay's lower layer is one file system: a file system mounted inside the tree
// would look empty to the build, so create builds in the tree itself, saying why.
TEST_F(CreateRegen, MountPointInsideTheTreeIsNotHiddenFromTheBuild) {
  std::string cache = src() + "/cache";
  fs::create_directory(cache);
  ASSERT_EQ(lstest::run({"mount", "-t", "tmpfs", "tmpfs", cache}).status, 0) << "mounting a tmpfs needs root";
  struct Unmount {
    std::string path;
    ~Unmount() { lstest::run({"umount", path}); }
  } unmount{cache};
  lstest::write_file(cache + "/kept", "on the tmpfs\n");
  auto r = create(patch("greet.patch"), {"--build-cmd", "test -f cache/kept && make hello"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("warning: building in the tree itself: " + cache +
                       " is a mount point inside the tree, which an overlay would hide"),
            std::string::npos)
      << r.err;
}

// Without CAP_SYS_ADMIN, create mounts its overlays in a user namespace of its own.
TEST_F(CreateRegen, UnprivilegedUserGetsTheTreeBackToo) {
  lstest::require_tools({"setpriv"});
  ASSERT_EQ(lstest::run({"chown", "-R", "nobody:nogroup", tmp.path()}).status, 0);
  auto before = picture();
  auto args = create_args(patch("page.patch"));
  args.insert(args.begin(), {"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"});
  expect_good_update(lstest::run(args));
  expect_tree_unchanged(before);
}
