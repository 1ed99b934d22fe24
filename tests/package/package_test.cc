// `livesplice package`: the .deb it writes (read back with dpkg-deb, Debian's own tool)
// and the store dpkg unpacks from it, converged on real running processes by sync.
//
// The updates are a stack made the way a cumulative package's are: the single case's
// fix (sentinel 1001 → 2002), then a fix made on top of it (2002 → 3003: create on the
// tree with the first fix applied, the binary still the one that runs). The second
// applies only after the first, so the order the package gives must survive dpkg,
// which writes no install record. The whole path through apt and dpkg's trigger is
// tests/package/apt-e2e. Nothing is mocked or skipped; only processes started here are
// signalled.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "steps.h"
#include "support.h"

namespace fs = std::filesystem;
using namespace lsproc;

namespace {

const std::string kStoreDir = "var/lib/livesplice/updates";

class Package : public PtraceTest {
 protected:
  // The stack: first.lsu (label 1.0-2) then on-top.lsu (1.0-3), both for the prog that
  // tmp/single holds (built once, from the original source).
  void make_stack() {
    build_case("single", src());
    first = create_update(src(), case_dir("single") + "/fix.patch", tmp / "first.lsu", {"--label", "1.0-2"});
    patch_tree(src(), case_dir("single") + "/fix.patch");   // sources fixed, prog as it was
    on_top = create_update(src(), std::string(PACKAGE_CASES_DIR) + "/single-on-top.patch", tmp / "on-top.lsu",
                           {"--label", "1.0-3"});
  }
  std::string src() const { return tmp / "single"; }

  // `livesplice package UPDATES --name single-live --version VERSION -o tmp/out`.
  RunResult package(const std::vector<std::string>& updates, const std::string& version = "2",
                    const std::string& name = "single-live") {
    std::vector<std::string> args{"package"};
    args.insert(args.end(), updates.begin(), updates.end());
    args.insert(args.end(), {"--name", name, "--version", version, "-o", tmp / "out"});
    return ls(args);
  }
  std::string deb(const std::string& version = "2") const { return tmp / ("out/single-live_" + version + "_amd64.deb"); }

  // The package unpacked as dpkg unpacks it (dpkg-deb -x keeps modes and times): the
  // store's directory under `root`.
  std::string unpack(const std::string& root) {
    must({"dpkg-deb", "-x", deb(), root});
    return root + "/var/lib/livesplice";
  }
  // The id (file name without .lsu) of the file in `dir` holding the same bytes as `update`.
  static std::string stored_id(const std::string& dir, const std::string& update) {
    for (const auto& f : fs::directory_iterator(dir))
      if (read_file(f.path()) == read_file(update)) return f.path().stem();
    throw Failure(update + ": not in " + dir);
  }

  TempDir tmp;
  std::string first, on_top;
};

// 1. The .deb: Debian's tools read it back; its control names the package, amd64 and
// livesplice; it holds each update byte for byte at ROOT/updates/ID.lsu, owned by root,
// mode 0644, the later update with the later time.
TEST_F(Package, DebHoldsTheUpdatesWhereTheStoreReadsThem) {
  make_stack();
  RunResult r = package({first, on_top});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find(deb()), std::string::npos) << r.describe();

  RunResult fields = must({"dpkg-deb", "-f", deb(), "Package", "Version", "Architecture", "Depends"});
  EXPECT_EQ(fields.out, "Package: single-live\nVersion: 2\nArchitecture: amd64\nDepends: livesplice\n");
  RunResult listing = must({"dpkg-deb", "-c", deb()});
  std::string root = unpack(tmp / "root");
  std::string dir = root + "/updates";
  std::string a = stored_id(dir, first), b = stored_id(dir, on_top);
  for (const auto& id : {a, b}) {
    bool listed = false;
    std::istringstream in(listing.out);
    for (std::string l; std::getline(in, l);)
      if (l.ends_with("./" + kStoreDir + "/" + id + ".lsu"))
        listed = l.starts_with("-rw-r--r-- root/root");
    EXPECT_TRUE(listed) << id << ".lsu must be in the package, root's, mode 0644:\n" << listing.out;
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);
  EXPECT_LT(fs::last_write_time(dir + "/" + a + ".lsu"), fs::last_write_time(dir + "/" + b + ".lsu"))
      << "the update given first must have the older time: the store's order without install records";
  // Each file is a whole, verified update under its own id.
  RunResult info = ls({"info", dir + "/" + b + ".lsu"});
  EXPECT_EQ(info.status, 0) << info.describe();
  EXPECT_NE(info.out.find("label 1.0-3"), std::string::npos) << info.describe();
}

// 2. What dpkg unpacks converges: sync over the unpacked store applies the stack in the
// order the package gave, each on its first attempt (--rounds 0: an update tried before
// the one it was made on top of fails run-pre matching, and is not tried again).
TEST_F(Package, UnpackedStackAppliesInTheOrderGiven) {
  make_stack();
  ASSERT_EQ(package({first, on_top}).status, 0);
  std::string root = unpack(tmp / "root");
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  RunResult r = ls({"sync", "--root", root, "--rounds", "0"}, 180s);
  EXPECT_EQ(r.status, 0) << r.describe();
  size_t first_line = r.out.find("applied " + stored_id(root + "/updates", first).substr(0, 8));
  size_t second_line = r.out.find("applied " + stored_id(root + "/updates", on_top).substr(0, 8));
  EXPECT_TRUE(first_line != std::string::npos && second_line != std::string::npos && first_line < second_line)
      << r.describe();
  size_t mark = prog.line_count();
  prog.wait_for("sentinel 3003", mark);
  expect_alive_and_running(prog);
  EXPECT_EQ(view_ids(prog).size(), 2u);
}

// 3. The store's order for packaged updates is the order given, not the order of their
// names: given with the larger id first, status lists them so.
TEST_F(Package, StoreOrderIsTheCommandLineOrder) {
  make_stack();
  ASSERT_EQ(package({first, on_top}).status, 0);
  std::string probe = unpack(tmp / "probe") + "/updates";
  std::vector<std::string> given{first, on_top};
  if (stored_id(probe, first) < stored_id(probe, on_top)) std::swap(given[0], given[1]);
  fs::remove_all(tmp / "out");
  ASSERT_EQ(package(given).status, 0);
  std::string root = unpack(tmp / "root");
  RunResult s = ls({"status", "--json", "--root", root});
  ASSERT_EQ(s.status, 0) << s.describe();
  Json updates = s.json()["updates"];
  ASSERT_EQ(updates.size(), 2u) << s.out;
  EXPECT_EQ(updates[0]["id"], stored_id(root + "/updates", given[0])) << s.out;
  EXPECT_EQ(updates[1]["id"], stored_id(root + "/updates", given[1])) << s.out;
}

// 4. Refusals write nothing: a corrupted update, a name Debian refuses, a version dpkg
// refuses (its own message), the same update twice. Each exits 1.
TEST_F(Package, RefusalsWriteNothing) {
  build_case("single", src());
  first = create_update(src(), case_dir("single") + "/fix.patch", tmp / "first.lsu");
  auto bytes = lstest::read_bytes(first);
  bytes[bytes.size() / 2] ^= 0x40;
  lstest::write_bytes(tmp / "corrupt.lsu", bytes);

  RunResult corrupt = package({tmp / "corrupt.lsu"});
  EXPECT_EQ(corrupt.status, 1) << corrupt.describe();
  EXPECT_NE(corrupt.err.find("corrupt.lsu"), std::string::npos) << corrupt.describe();
  RunResult name = package({first}, "1", "Single_Live");
  EXPECT_EQ(name.status, 1) << name.describe();
  EXPECT_NE(name.err.find("not a Debian package name"), std::string::npos) << name.describe();
  RunResult version = package({first}, "one");
  EXPECT_EQ(version.status, 1) << version.describe();
  EXPECT_NE(version.err.find("dpkg-deb"), std::string::npos) << version.describe();
  RunResult twice = package({first, first});
  EXPECT_EQ(twice.status, 1) << twice.describe();
  EXPECT_NE(twice.err.find("given twice"), std::string::npos) << twice.describe();

  size_t left = 0;
  if (fs::exists(tmp / "out")) left = std::distance(fs::directory_iterator(tmp / "out"), fs::directory_iterator());
  EXPECT_EQ(left, 0u) << "a refused package leaves nothing in its output directory";

  RunResult help = ls({"package", "--help"});
  EXPECT_EQ(help.status, 0) << help.describe();
  EXPECT_NE(help.out.find("Exit 0"), std::string::npos) << help.describe();
}

}  // namespace
