// The reason the differ gives for a changed struct layout must describe the change: a
// member that only moved is "moved", never "removed", even when the change is too long
// to list in full (expat's CVE-2023-52425 fix adds three members to XML_ParserStruct
// and once had the differ claim that an untouched member at the end was removed).
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

}  // namespace

TEST(DifferLayoutReason, MovedMemberIsNotRemoved) {
  fs::path dir = fs::temp_directory_path() / ("ls-layout-reason-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (bool post : {false, true}) {
    std::ofstream(dir / (post ? "post.c" : "pre.c")) << source(post);
    std::string obj = (dir / (post ? "post.o" : "pre.o")).string();
    int status = 0;
    run("gcc -c -g -O2 -ffunction-sections -fdata-sections " + (dir / (post ? "post.c" : "pre.c")).string() +
            " -o " + obj + " 2>&1",
        &status);
    ASSERT_EQ(status, 0) << "gcc failed for " << obj;
  }
  int status = 0;
  std::string out = run(std::string(LIVESPLICE_BIN) + " diff --json " + (dir / "pre.o").string() + " " +
                            (dir / "post.o").string() + " 2>/dev/null",
                        &status);
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << "not JSON: " << out;
  ASSERT_TRUE(j.contains("unsafe") && !j["unsafe"].empty()) << out;
  std::string reason;
  for (const auto& u : j["unsafe"])
    if (u.value("symbol", "").find("struct ctx") != std::string::npos) reason = u.value("reason", "");
  ASSERT_FALSE(reason.empty()) << "no unsafe entry names struct ctx: " << out;
  EXPECT_EQ(reason.find("removed"), std::string::npos) << reason;
  EXPECT_NE(reason.find("member 'added1' added"), std::string::npos) << reason;
  EXPECT_NE(reason.find("1 more member changes"), std::string::npos) << reason;
  EXPECT_NE(reason.find("size 24 -> 48 bytes"), std::string::npos) << reason;
  fs::remove_all(dir);
}
