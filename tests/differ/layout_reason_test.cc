// The reason the differ gives for a changed type must describe the change: a member
// that only moved is "moved", never "removed", even when the change is too long to list
// in full (expat's CVE-2023-52425 fix adds three members to XML_ParserStruct and once
// had the differ claim that an untouched member at the end was removed); an array
// member's type shows its bounds; an enum names the enumerator and both values.
// Real gcc, real `livesplice diff --json`.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

std::string run(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  *status = pclose(p);
  return out;
}

// pre: struct ctx { a, b, tail }; post: four members inserted before tail, so that the
// reason lists four changes and says one more (tail's move) exists.
std::string source(bool post) {
  std::string s = "struct ctx {\n  long a;\n  long b;\n";
  if (post) s += "  long added1;\n  int added2;\n  int added3;\n  long added4;\n";
  s += "  long tail;\n};\n";
  s += "long use(struct ctx *c) { return c->a + c->b + c->tail";
  if (post) s += " + c->added1 + c->added2 + c->added3 + c->added4";
  s += "; }\n";
  return s;
}

// Compiles both sources, diffs them and returns the reason of the unsafe entry whose
// symbol contains `symbol` ("" when there is none).
std::string unsafe_reason(const std::string& pre, const std::string& post, const std::string& symbol) {
  fs::path dir = fs::temp_directory_path() / ("ls-layout-reason-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (bool is_post : {false, true}) {
    fs::path src = dir / (is_post ? "post.c" : "pre.c");
    std::ofstream(src) << (is_post ? post : pre);
    std::string obj = (dir / (is_post ? "post.o" : "pre.o")).string();
    int status = 0;
    run("gcc -c -g -O2 -ffunction-sections -fdata-sections " + src.string() + " -o " + obj + " 2>&1", &status);
    EXPECT_EQ(status, 0) << "gcc failed for " << obj;
  }
  int status = 0;
  std::string out = run(std::string(LIVESPLICE_BIN) + " diff --json " + (dir / "pre.o").string() + " " +
                            (dir / "post.o").string() + " 2>/dev/null",
                        &status);
  fs::remove_all(dir);
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << out;
  if (j.is_discarded() || !j.contains("unsafe")) return "";
  for (const auto& u : j["unsafe"])
    if (u.value("symbol", "").find(symbol) != std::string::npos) return u.value("reason", "");
  ADD_FAILURE() << "no unsafe entry names " << symbol << ": " << out;
  return "";
}

}  // namespace

TEST(DifferLayoutReason, MovedMemberIsNotRemoved) {
  std::string reason = unsafe_reason(source(false), source(true), "struct ctx");
  EXPECT_EQ(reason.find("removed"), std::string::npos) << reason;
  EXPECT_NE(reason.find("member 'added1' added"), std::string::npos) << reason;
  EXPECT_NE(reason.find("1 more member changes"), std::string::npos) << reason;
  EXPECT_NE(reason.find("size 24 -> 48 bytes"), std::string::npos) << reason;
}

// "changed type from []char to []char" told the reader nothing: bounds are printed,
// every dimension of them.
TEST(DifferLayoutReason, ArrayMemberShowsItsBounds) {
  auto src = [](const char* name, const char* grid) {
    return std::string("struct rec {\n  char name") + name + ";\n  int grid" + grid +
           ";\n  char *tags[4];\n};\nint use(struct rec *r) { return r->name[1] + r->grid[1][2] + *r->tags[3]; }\n";
  };
  std::string reason = unsafe_reason(src("[16]", "[2][3]"), src("[32]", "[2][4]"), "struct rec");
  EXPECT_NE(reason.find("member 'name' changed type from char[16] to char[32]"), std::string::npos) << reason;
  EXPECT_NE(reason.find("member 'grid' moved"), std::string::npos) << reason;
  std::string grid = unsafe_reason(src("[16]", "[2][3]"), src("[16]", "[2][4]"), "struct rec");
  EXPECT_NE(grid.find("member 'grid' changed type from int[2][3] to int[2][4]"), std::string::npos) << grid;
}

// An enumerator renumbered: the reason names the enum by its enumerators, the
// enumerator, and its old and new values.
TEST(DifferLayoutReason, EnumRenumberedNamesEnumeratorAndValues) {
  auto src = [](bool post) {
    std::string s = "enum {\n  OC_EXIT = 0x2700,\n";
    if (post) s += "  OC_CONST = 0x2800,\n";
    s += post ? "  OC_DONE = 0x2900,\n};\n" : "  OC_DONE = 0x2800,\n};\n";
    s += "int done(unsigned op) { return op == OC_DONE ? 1 : op == OC_EXIT ? 2 : 0";
    if (post) s += " + (op == OC_CONST)";
    return s + "; }\n";
  };
  std::string reason = unsafe_reason(src(false), src(true), "enum <anon: OC_EXIT,...>");
  EXPECT_NE(reason.find("OC_DONE changed value 0x2800 -> 0x2900"), std::string::npos) << reason;
  EXPECT_NE(reason.find("running data would change meaning"), std::string::npos) << reason;
  // The change itself names only what changed (the hint after it names the type).
  EXPECT_EQ(reason.substr(0, reason.find("; if the patch converts")).find("OC_EXIT"), std::string::npos) << reason;
}

// An enumerator removed may still be held by running data, and the patched code has no
// name for it: refused, saying so, and naming what now holds its value if anything.
TEST(DifferLayoutReason, EnumeratorRemovedIsRefused) {
  // The patched code changes too (only an object whose code changed is checked).
  auto src = [](const char* second, const char* extra) {
    return std::string("enum mode { M_READ = 1, ") + second +
           ", M_EXEC = 4 };\nint allowed(enum mode m) { return m == M_READ || m == M_EXEC" + extra + "; }\n";
  };
  std::string gone = unsafe_reason(src("M_WRITE = 2", ""), src("M_APPEND = 8", " || m == M_APPEND"), "enum mode");
  EXPECT_NE(gone.find("M_WRITE (0x2) removed"), std::string::npos) << gone;
  std::string renamed = unsafe_reason(src("M_WRITE = 2", ""), src("M_STORE = 2", " || m == M_STORE"), "enum mode");
  EXPECT_NE(renamed.find("M_WRITE (0x2) removed, 0x2 now named M_STORE"), std::string::npos) << renamed;
}
