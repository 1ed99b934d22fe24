// `livesplice create --kernel` on Debian's own kernel source and config (linux-source-6.1
// and the image package of the test bed's release, scripts/kernel-testbed), one patch per
// test from patches/.
//
// The packages come from scripts/kernel-testbed fetch (cached outside the repository);
// the first test pays for unpacking the source and preparing the build directory, the
// others reuse that cache but still build, diff and write their own update, so each
// can fail on its own. Nothing is skipped: without the packages, the network or gcc-12
// every test fails and says why.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "arch/target.h"
#include "elf/object.h"
#include "matcher/matcher.h"
#include "support/support.h"

namespace fs = std::filesystem;
using lstest::RunResult;
using nlohmann::json;

namespace {

struct Inputs {
  std::string kver;      // the release under test (kernel-testbed env), 6.1.0-N-amd64
  std::string version;   // its upstream version, 6.1.N (the package's without the revision)
  std::string tarball;   // linux-source-6.1.tar.xz
  std::string config;    // boot/config-<kver>
  std::string moddir;    // lib/modules/<kver> of the image package
  std::string headers;   // linux-headers-<kver>, for the update's module
  std::string error;     // why they could not be had
};

// Fetched once per test binary run (the fetch itself is idempotent and locked); the
// release and its files are what the test bed recorded, never named here.
const Inputs& inputs() {
  static Inputs in = [] {
    Inputs r;
    RunResult f = lstest::run({std::string(KCREATE_REPO) + "/scripts/kernel-testbed", "fetch"});
    if (f.status != 0) {
      r.error = "scripts/kernel-testbed fetch failed:\n" + f.describe();
      return r;
    }
    RunResult u = lstest::sh("set -e; eval \"$(" + lstest::quote(std::string(KCREATE_REPO) + "/scripts/kernel-testbed") +
                             " env)\"; printf '%s\\n' \"$kver\" \"${version%-*}\" \"$source_tarball\" \"$config\" \"$moddir\" \"$headers\"");
    if (u.status != 0) {
      r.error = "scripts/kernel-testbed env failed:\n" + u.describe();
      return r;
    }
    std::istringstream lines(u.out);
    for (std::string* field : {&r.kver, &r.version, &r.tarball, &r.config, &r.moddir, &r.headers})
      std::getline(lines, *field);
    if (!fs::exists(r.tarball) || !fs::exists(r.config) || !fs::exists(r.headers + "/Makefile"))
      r.error = "missing after fetch: " + r.tarball + " " + r.config + " " + r.headers;
    return r;
  }();
  return in;
}

struct Created {
  RunResult run;
  json out;            // create's --json summary (null unless it succeeded)
  json manifest;       // `livesplice info --json` of the update (null unless written)
  std::string update;
};

Created create(const lstest::TempDir& dir, const std::string& patch, bool keep_work = false) {
  const Inputs& in = inputs();
  Created c;
  if (!in.error.empty()) {
    ADD_FAILURE() << in.error;
    return c;
  }
  c.update = dir / "update.lsu";
  std::vector<std::string> argv = {lstest::livesplice(), "create", "--kernel", "--source", in.tarball,
                                   "--config", in.config, "--headers", in.headers, "--patch", std::string(KCREATE_PATCHES) + "/" + patch,
                                   "-o", c.update, "--json"};
  if (keep_work) argv.push_back("--keep-work");
  c.run = lstest::run(argv);
  if (c.run.status == 0) {
    c.out = c.run.json();
    RunResult info = lstest::run({lstest::livesplice(), "info", "--json", c.update});
    EXPECT_EQ(info.status, 0) << info.describe();
    if (info.status == 0) c.manifest = info.json();
  }
  return c;
}

// name -> (status, module) of every function create reports.
std::map<std::string, std::pair<std::string, std::string>> functions(const Created& c) {
  std::map<std::string, std::pair<std::string, std::string>> out;
  for (const auto& f : c.out.value("functions", json::array()))
    out[f["name"]] = {f["status"], f["module"]};
  return out;
}

// Entries per carried kernel table, from the update's manifest.
std::map<std::string, int> special(const Created& c) {
  std::map<std::string, int> out;
  for (const auto& s : c.manifest.value("sections", json::array()))
    if (s.value("role", "") == "special") out[s["original"]] += s["entries"].get<int>();
  return out;
}

// The unpacked source file as create left it (the cache's tree, found from the tarball).
std::string source_file(const std::string& rel) {
  std::string cache = getenv("XDG_CACHE_HOME") && *getenv("XDG_CACHE_HOME")
                          ? std::string(getenv("XDG_CACHE_HOME"))
                          : std::string(getenv("HOME")) + "/.cache";
  for (const auto& d : fs::directory_iterator(cache + "/livesplice/kernel/src")) {
    if (!d.is_directory() || d.path().filename().string().rfind("linux-source-6.1-", 0) != 0) continue;
    std::string p = d.path().string() + "/linux-source-6.1/" + rel;
    if (fs::exists(p)) return lstest::read_file(p);
  }
  return "(not found)";
}

void expect_kernel_manifest(const Created& c) {
  ASSERT_TRUE(c.manifest.is_object()) << c.run.describe();
  EXPECT_EQ(c.manifest["kernel"]["release"], inputs().kver);
  EXPECT_EQ(c.manifest["kernel"]["version"], inputs().version);
  EXPECT_EQ(c.manifest["build_system"], "kbuild");
}

TEST(KernelCreate, CmdlineProcShowIsTheOneChangedFunction) {
  lstest::TempDir dir;
  Created c = create(dir, "cmdline.patch");
  ASSERT_EQ(c.run.status, 0) << c.run.describe();
  auto f = functions(c);
  ASSERT_EQ(f.size(), 1u) << c.out.dump(2);
  EXPECT_EQ(f["cmdline_proc_show"], std::make_pair(std::string("changed"), std::string("vmlinux")));
  expect_kernel_manifest(c);
  ASSERT_EQ(c.manifest["targets"].size(), 1u);
  EXPECT_EQ(c.manifest["targets"][0]["kind"], "kernel");
  EXPECT_EQ(c.manifest["targets"][0]["name"], "vmlinux");
  // Its ftrace call site, its return thunk jump and its ORC rows travel with it; ORC's
  // two tables stay parallel.
  auto s = special(c);
  EXPECT_EQ(s["__mcount_loc"], 1) << c.manifest["sections"].dump(2);
  EXPECT_GE(s[".return_sites"], 1);
  EXPECT_GE(s[".orc_unwind_ip"], 1);
  EXPECT_EQ(s[".orc_unwind"], s[".orc_unwind_ip"]);
  EXPECT_EQ(source_file("fs/proc/cmdline.c").find("livesplice=cmdline"), std::string::npos)
      << "the source tree was not restored";
}

// The update carries the skeleton module built against the headers package: apply
// --kernel takes its new code's module identity from it, so its vermagic must be the
// release's and its struct module must be there.
TEST(KernelCreate, CarriesASkeletonModuleBuiltAgainstTheHeaders) {
  lstest::TempDir dir;
  Created c = create(dir, "cmdline.patch");
  ASSERT_EQ(c.run.status, 0) << c.run.describe();
  ASSERT_TRUE(c.manifest["kernel"].contains("module_section")) << c.manifest["kernel"].dump();
  RunResult sec = lstest::sh("readelf -SW '" + c.update + "' | grep -c '\\.livesplice\\.kernel_module'");
  EXPECT_EQ(sec.out, "1\n") << sec.describe();
  std::string bytes = lstest::read_file(c.update);
  EXPECT_NE(bytes.find("vermagic=" + inputs().kver + " SMP"), std::string::npos);
  EXPECT_NE(bytes.find("name=livesplice_update"), std::string::npos);
  EXPECT_NE(bytes.find(".gnu.linkonce.this_module"), std::string::npos);
}

// Headers that are not there are refused before anything is built.
TEST(KernelCreate, MissingHeadersAreRefusedFirst) {
  const Inputs& in = inputs();
  ASSERT_TRUE(in.error.empty()) << in.error;
  lstest::TempDir dir;
  RunResult r = lstest::run({lstest::livesplice(), "create", "--kernel", "--source", in.tarball, "--config",
                             in.config, "--headers", dir / "no-headers", "--patch",
                             std::string(KCREATE_PATCHES) + "/cmdline.patch", "-o", dir / "u.lsu"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.output().find("--headers"), std::string::npos) << r.describe();
  EXPECT_FALSE(fs::exists(dir / "u.lsu"));
}

TEST(KernelCreate, MeminfoProcShow) {
  lstest::TempDir dir;
  Created c = create(dir, "meminfo.patch");
  ASSERT_EQ(c.run.status, 0) << c.run.describe();
  auto f = functions(c);
  ASSERT_EQ(f.size(), 1u) << c.out.dump(2);
  EXPECT_EQ(f["meminfo_proc_show"].first, "changed");
  expect_kernel_manifest(c);
}

TEST(KernelCreate, NewFunctionAndNewGlobal) {
  lstest::TempDir dir;
  Created c = create(dir, "new-function-and-global.patch");
  ASSERT_EQ(c.run.status, 0) << c.run.describe();
  auto f = functions(c);
  EXPECT_EQ(f["cmdline_proc_show"].first, "changed") << c.out.dump(2);
  EXPECT_EQ(f["livesplice_count_read"].first, "new") << c.out.dump(2);
  EXPECT_EQ(f.size(), 2u) << c.out.dump(2);
  EXPECT_EQ(c.out["data_new"], 1) << c.out.dump(2);
  bool carried = false;
  for (const auto& d : c.manifest["data"])
    if (d["name"] == "livesplice_cmdline_reads") carried = d["carried"].get<bool>() && d["status"] == "new";
  EXPECT_TRUE(carried) << c.manifest["data"].dump(2);
  // The new function's own table entries travel too: two ftrace sites now.
  EXPECT_EQ(special(c)["__mcount_loc"], 2);
}

TEST(KernelCreate, FAIL_ChangedInitializerIsRefusedWithTheReason) {
  lstest::TempDir dir;
  Created c = create(dir, "FAIL-changed-initializer.patch");
  EXPECT_EQ(c.run.status, 2) << c.run.describe();
  EXPECT_NE(c.run.err.find("panic_timeout"), std::string::npos) << c.run.err;
  EXPECT_NE(c.run.err.find("initial value"), std::string::npos) << c.run.err;
  EXPECT_FALSE(fs::exists(c.update));
  EXPECT_NE(source_file("kernel/panic.c").find("int panic_timeout = CONFIG_PANIC_TIMEOUT;"), std::string::npos)
      << "the source tree was not restored";
}

TEST(KernelCreate, FAIL_BrokenPatchLeavesTheSourceAsItWas) {
  lstest::TempDir dir;
  Created c = create(dir, "FAIL-does-not-compile.patch");
  EXPECT_EQ(c.run.status, 1) << c.run.describe();
  EXPECT_NE(c.run.err.find("fs/proc/cmdline.c"), std::string::npos) << c.run.err;
  std::string now = source_file("fs/proc/cmdline.c");
  EXPECT_EQ(now.find("livesplice_undeclared"), std::string::npos) << "the source tree was not restored";
  EXPECT_NE(now.find("seq_puts(m, saved_command_line);"), std::string::npos);
}

// A WARN site whose line moved changes only the line field of its __bug_table entry,
// which is diagnostic: no function changed (exit 3), although the entry differs.
TEST(KernelCreate, MovedWarnLineIsNoChange) {
  lstest::TempDir dir;
  Created c = create(dir, "warn-line-moved.patch");
  EXPECT_EQ(c.run.status, 3) << c.run.describe();
  EXPECT_NE(c.run.err.find("no function changed"), std::string::npos) << c.run.err;
}

TEST(KernelCreate, FAIL_ChangedInitCodeIsRefused) {
  lstest::TempDir dir;
  Created c = create(dir, "FAIL-changed-init-code.patch");
  EXPECT_EQ(c.run.status, 2) << c.run.describe();
  EXPECT_NE(c.run.err.find("proc_cmdline_init"), std::string::npos) << c.run.err;
  EXPECT_NE(c.run.err.find(".init.text"), std::string::npos) << c.run.err;
  EXPECT_FALSE(fs::exists(c.update));
}

TEST(KernelCreate, FAIL_NewExportIsRefused) {
  lstest::TempDir dir;
  Created c = create(dir, "FAIL-new-export.patch");
  EXPECT_EQ(c.run.status, 2) << c.run.describe();
  EXPECT_NE(c.run.err.find("ksymtab+livesplice_exported"), std::string::npos) << c.run.err;
}

TEST(KernelCreate, FAIL_NewPerCpuVariableIsRefused) {
  lstest::TempDir dir;
  Created c = create(dir, "FAIL-new-percpu-variable.patch");
  EXPECT_EQ(c.run.status, 2) << c.run.describe();
  EXPECT_NE(c.run.err.find("livesplice_reads"), std::string::npos) << c.run.err;
  EXPECT_NE(c.run.err.find(".data..percpu"), std::string::npos) << c.run.err;
}

// Ctrl-C while the patched source is being compiled (mballoc.c takes seconds: a wide
// window): create dies of the signal and the source comes back with its old contents and mtime.
TEST(KernelCreate, InterruptedCreateRestoresTheSource) {
  const Inputs& in = inputs();
  ASSERT_TRUE(in.error.empty()) << in.error;
  lstest::TempDir dir;
  std::string file_cmd = R"(f=$(ls -d "${XDG_CACHE_HOME:-$HOME/.cache}"/livesplice/kernel/src/linux-source-6.1-*/linux-source-6.1/fs/ext4/mballoc.c | head -1))";
  RunResult r = lstest::sh(file_cmd + R"(
    before=$(md5sum < "$f")$(stat -c %Y "$f")
    )" + lstest::quote(lstest::livesplice()) + " create --kernel --source " + lstest::quote(in.tarball) +
                           " --config " + lstest::quote(in.config) + " --headers " + lstest::quote(in.headers) +
                           " --patch " +
                           lstest::quote(std::string(KCREATE_PATCHES) + "/ext4-mballoc-6.1.192-2.patch") + " -o " +
                           lstest::quote(dir / "update.lsu") + R"( 2> err &
    pid=$!
    i=0; until grep -q "building post" err; do i=$((i+1)); [ $i -lt 1200 ] || { kill $pid; echo "never reached the post build"; exit 1; }; sleep 0.25; done
    patched=$(grep -c "if (!folio) {" "$f")
    kill -INT $pid; wait $pid; rc=$?
    after=$(md5sum < "$f")$(stat -c %Y "$f")
    cat err
    echo "rc=$rc patched=$patched"
    [ "$before" = "$after" ] && echo restored
    [ -e update.lsu ] && echo "update written")",
                           dir.path());
  EXPECT_NE(r.out.find("rc=130"), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("patched=2"), std::string::npos) << "not interrupted while patched\n" << r.describe();
  EXPECT_NE(r.out.find("restored"), std::string::npos) << r.describe();
  EXPECT_EQ(r.out.find("update written"), std::string::npos) << r.describe();
}

// The fix Debian made between 6.1.192-1 and 6.1.192-2 (fs/ext4/mballoc.c, NULL checks
// of __filemap_get_folio): ext4 is a module, so every changed function must say so.
TEST(KernelCreate, DebianExt4FixChangesFunctionsOfModuleExt4) {
  lstest::TempDir dir;
  Created c = create(dir, "ext4-mballoc-6.1.192-2.patch");
  ASSERT_EQ(c.run.status, 0) << c.run.describe();
  auto f = functions(c);
  ASSERT_FALSE(f.empty());
  // Only the functions the patch touches (and their inlined callers/clones) may change;
  // the rest of mballoc.c's ~150 functions must not, although their table entries moved.
  static const std::set<std::string> allowed = {
      "ext4_mb_get_buddy_page_lock", "ext4_mb_load_buddy_gfp", "ext4_mb_init_group", "ext4_mb_load_buddy",
      "ext4_mb_init_cache", "ext4_mb_load_buddy_gfp.cold", "ext4_mb_init_group.cold"};
  bool load_buddy = false;
  for (const auto& [name, st] : f) {
    EXPECT_EQ(st.second, "ext4") << name;
    EXPECT_EQ(st.first, "changed") << name;
    EXPECT_TRUE(allowed.count(name)) << "unexpected change: " << name << "\n" << c.out.dump(2);
    load_buddy |= name.rfind("ext4_mb_load_buddy_gfp", 0) == 0;
  }
  EXPECT_TRUE(load_buddy) << c.out.dump(2);
  expect_kernel_manifest(c);
  ASSERT_EQ(c.manifest["targets"].size(), 1u);
  EXPECT_EQ(c.manifest["targets"][0]["kind"], "kernel-module");
  EXPECT_EQ(c.manifest["targets"][0]["name"], "ext4");
  for (const auto& o : c.manifest["objects"]) EXPECT_EQ(o["path"], "fs/ext4/mballoc.o");
  // BUG_ON and WARN_RATELIMIT sites of the changed functions travel with them.
  auto s = special(c);
  EXPECT_GE(s["__bug_table"], 2) << c.manifest["sections"].dump(2);
  EXPECT_GE(s["__mcount_loc"], 1);
  EXPECT_EQ(s[".orc_unwind"], s[".orc_unwind_ip"]);
}

// The pre object create builds must be the code Debian shipped: every function of
// fs/ext4/mballoc.o, compared with the same function in the package's ext4.ko, differs at
// most in how a relocation is written (the .ko is a partial link), never in its bytes or
// size. This is what run-pre matching will rely on in the running kernel.
TEST(KernelCreate, PreObjectMatchesTheShippedModule) {
  lstest::TempDir dir;
  Created c = create(dir, "ext4-mballoc-6.1.192-2.patch", /*keep_work=*/true);
  ASSERT_EQ(c.run.status, 0) << c.run.describe();
  std::string marker = "work directory kept: ";
  auto at = c.run.err.find(marker);
  ASSERT_NE(at, std::string::npos) << c.run.err;
  std::string work = c.run.err.substr(at + marker.size());
  work = work.substr(0, work.find('\n'));
  std::string pre = work + "/pre/0/mballoc.o";
  std::string ko = inputs().moddir + "/kernel/fs/ext4/ext4.ko";
  ASSERT_TRUE(fs::exists(pre) && fs::exists(ko)) << pre << " " << ko;
  RunResult d = lstest::run({lstest::livesplice(), "diff", "--json", pre, ko});
  fs::remove_all(work);
  json j = d.json();
  int paired = 0;
  for (const auto& s : j["symbols"]) {
    if (s["kind"] != "func" || (s["status"] != "same" && s["status"] != "changed")) continue;
    ++paired;
    std::string why = s.value("reason", "");
    EXPECT_EQ(why.find("code differs"), std::string::npos) << s["name"] << ": " << why;
    EXPECT_EQ(s["pre_size"], s["post_size"]) << s["name"] << ": " << why;
  }
  EXPECT_GE(paired, 60) << "too few mballoc.c functions found in ext4.ko";
}

}  // namespace

namespace {

// The pre tables of a replaced function whose pre code has alternatives and jump labels
// (tests/kernel/patches/rseq-update.patch: __rseq_handle_notify_resume, with the stac/clac
// of user_write_access_begin/end and the rseq tracepoints), and the sites the kernel's
// reading of them makes: each alternative as assembled, merged or replaced; each jump
// label as the NOP or its jmp. The guest test (kernel.match) matches them for real.
TEST(KernelCreate, PreTablesOfAlternativesAndJumpLabelsTravelForMatching) {
  lstest::TempDir dir;
  Created c = create(dir, "../../kernel/patches/rseq-update.patch");
  ASSERT_EQ(c.run.status, 0) << c.run.describe();
  std::map<std::string, int> pre;
  for (const auto& s : c.manifest.value("sections", json::array()))
    if (s.value("role", "") == "pre") pre[s["original"]]++;
  EXPECT_EQ(pre[".altinstructions"], 1) << c.manifest["sections"].dump(2);
  EXPECT_EQ(pre[".altinstr_replacement"], 1);
  EXPECT_EQ(pre["__jump_table"], 1);

  ls::elf::Object u = ls::elf::Object::load(c.update);
  ls::match::Rewrites rw;
  ASSERT_TRUE(ls::arch::target(u.machine()).kernel_table_sites(u, rw).ok());
  uint32_t fn = 0;
  for (const auto& s : u.sections())
    if (s.name == ".livesplice.pre.text.__rseq_handle_notify_resume") fn = s.index;
  ASSERT_NE(fn, 0u);
  ASSERT_TRUE(rw.sites.count(fn));
  const std::vector<uint8_t> stac{0x0f, 0x01, 0xcb}, clac{0x0f, 0x01, 0xca}, nop3{0x0f, 0x1f, 0x00},
      nop5{0x0f, 0x1f, 0x44, 0x00, 0x00};
  int stacs = 0, clacs = 0, labels = 0;
  for (const auto& site : rw.sites.at(fn)) {
    auto has = [&](const std::vector<uint8_t>& b) {
      return std::any_of(site.forms.begin(), site.forms.end(), [&](const auto& f) { return f.bytes == b; });
    };
    if (site.what == "jump label") {
      ++labels;
      EXPECT_EQ(site.size, 5u);
      EXPECT_TRUE(has(nop5));
      bool jmp = std::any_of(site.forms.begin(), site.forms.end(), [](const auto& f) {
        return f.bytes[0] == 0xe9 && f.fields.size() == 1 && f.fields[0].symbol == 0;
      });
      EXPECT_TRUE(jmp) << "jump label at +" << site.offset;
    } else if (has(stac) || has(clac)) {
      (has(stac) ? stacs : clacs)++;
      EXPECT_EQ(site.size, 3u);
      EXPECT_TRUE(has({0x90, 0x90, 0x90})) << "the original as assembled at +" << site.offset;
      EXPECT_TRUE(has(nop3)) << "the original's NOPs merged at +" << site.offset;
    }
  }
  EXPECT_GE(stacs, 1);
  EXPECT_GE(clacs, 1);
  EXPECT_GE(labels, 1);
}

}  // namespace
