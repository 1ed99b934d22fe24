// The expect checker itself, on hand-written JSON: a checker that passes everything would
// make every differ case pass.
#include <gtest/gtest.h>

#include "expect.h"

namespace {

using ls::difftest::check;
using ls::difftest::ObjectResult;
using ls::difftest::parse_expect;
using nlohmann::json;

json sym(const std::string& name, const std::string& status, bool included = false,
         const std::string& kind = "func") {
  return {{"name", name}, {"kind", kind}, {"status", status}, {"included", included}, {"reason", ""}};
}

// An object result whose summary agrees with its symbols.
ObjectResult object(const std::string& file, int exit_code, std::vector<json> symbols,
                    std::vector<json> unsafe = {}) {
  json summary = {{"changed", 0}, {"new", 0}, {"removed", 0}, {"same", 0}, {"unsafe", unsafe.size()}};
  for (const auto& s : symbols) summary[s["status"].get<std::string>()] = summary[s["status"].get<std::string>()].get<int>() + 1;
  json j = {{"source", file}, {"symbols", symbols}, {"unsafe", unsafe}, {"summary", summary}};
  return {file, exit_code, j};
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

TEST(DifferExpect, UnlistedSymbolsMustBeSame) {
  auto e = parse_expect("# t\nchanged foo\nexit 0\n");
  EXPECT_EQ(joined(check(e, "O2", {object("a.c", 0, {sym("foo", "changed", true), sym("bar", "same")})})), "");
  auto p = check(e, "O2", {object("a.c", 0, {sym("foo", "changed", true), sym("bar", "changed", true)})});
  ASSERT_EQ(p.size(), 1u) << joined(p);
  EXPECT_NE(p[0].find("bar is changed, expected same"), std::string::npos) << p[0];
}

TEST(DifferExpect, RequiredLineMustMatchOptionalNeedNot) {
  auto e = parse_expect("# t\nsame foo.isra.*\nsame? bar.localalias\nany baz\nexit 3\n");
  auto p = check(e, "O2", {object("a.c", 3, {sym("foo", "same")})});
  ASSERT_EQ(p.size(), 1u) << joined(p);
  EXPECT_NE(p[0].find("no reported symbol matches foo.isra.*"), std::string::npos) << p[0];
  EXPECT_EQ(joined(check(e, "O2", {object("a.c", 3, {sym("foo.isra.0", "same")})})), "");
  // An optional line still constrains the status when the symbol is there.
  EXPECT_EQ(check(e, "O2", {object("a.c", 0, {sym("foo.isra.0", "same"), sym("bar.localalias", "changed", true)})}).size(), 2u);
}

TEST(DifferExpect, ModesSelectLines) {
  auto e = parse_expect("# t\nchanged mix @O0\nchanged checksum @!O0\nexit 0\nexit 3 @O3\n");
  EXPECT_TRUE(e.lines[0].applies_to("O0"));
  EXPECT_FALSE(e.lines[0].applies_to("O2"));
  EXPECT_TRUE(e.lines[1].applies_to("O2-nopie"));
  EXPECT_FALSE(e.lines[1].applies_to("O0"));
  EXPECT_EQ(e.exit_for("O2", "a.c"), 0);
  EXPECT_EQ(e.exit_for("O3", "a.c"), 3);
  EXPECT_EQ(joined(check(e, "O0", {object("a.c", 0, {sym("mix", "changed", true), sym("checksum", "same")})})), "");
  EXPECT_EQ(check(e, "O2", {object("a.c", 0, {sym("mix", "changed", true), sym("checksum", "same")})}).size(), 2u);
}

TEST(DifferExpect, FileQualifiedNamesAndExits) {
  auto e = parse_expect("# t\nchanged b.c:helper\nexit 3\nexit 0 b.c\n");
  std::vector<ObjectResult> ok = {object("a.c", 3, {sym("helper", "same")}),
                                  object("b.c", 0, {sym("helper", "changed", true)})};
  EXPECT_EQ(joined(check(e, "O2", ok)), "");
  std::vector<ObjectResult> bad = {object("a.c", 0, {sym("helper", "changed", true)}),
                                   object("b.c", 0, {sym("helper", "same")})};
  EXPECT_EQ(check(e, "O2", bad).size(), 3u) << joined(check(e, "O2", bad));
}

TEST(DifferExpect, UnsafeEntriesMustBeExpected) {
  auto e = parse_expect("# t\nchanged limit\nunsafe limit\nunsafe? struct?cfg\nexit 2\n");
  json u1 = {{"symbol", "limit"}, {"object", "post.o"}, {"reason", "initialiser"}};
  json u2 = {{"symbol", "struct cfg"}, {"object", "post.o"}, {"reason", "layout"}};
  json u3 = {{"symbol", "other"}, {"object", "post.o"}, {"reason", "?"}};
  EXPECT_EQ(joined(check(e, "O2", {object("a.c", 2, {sym("limit", "changed", false, "object")}, {u1, u2})})), "");
  EXPECT_EQ(check(e, "O2", {object("a.c", 2, {sym("limit", "changed", false, "object")}, {u1, u3})}).size(), 1u);
  // Nothing unsafe although expected: the entry is missing and exit 0 is not 2.
  EXPECT_EQ(check(e, "O2", {object("a.c", 0, {sym("limit", "changed", false, "object")})}).size(), 2u);
}

TEST(DifferExpect, InvariantsOfEveryDiff) {
  auto e = parse_expect("# t\nchanged foo\nexit 0\n");
  // A changed function that is not included.
  EXPECT_EQ(check(e, "O2", {object("a.c", 0, {sym("foo", "changed", false)})}).size(), 1u);
  // A summary that disagrees with the symbols.
  auto r = object("a.c", 0, {sym("foo", "changed", true)});
  r.json["summary"]["changed"] = 2;
  EXPECT_EQ(check(e, "O2", {r}).size(), 1u);
  // Exit 2 with nothing unsafe.
  auto e2 = parse_expect("# t\nchanged foo\nexit 2\n");
  EXPECT_EQ(check(e2, "O2", {object("a.c", 2, {sym("foo", "changed", true)})}).size(), 1u);
}

TEST(DifferExpect, IncludedAndExcluded) {
  auto e = parse_expect("# t\nnew check_len*\nincluded check_len*\nnew unused\nexcluded unused\nexit 0\n");
  EXPECT_EQ(joined(check(e, "O2", {object("a.c", 0, {sym("check_len.isra.0", "new", true), sym("unused", "new")})})), "");
  EXPECT_EQ(check(e, "O2", {object("a.c", 0, {sym("check_len.isra.0", "new"), sym("unused", "new", true)})}).size(), 2u);
}

TEST(DifferExpect, MalformedFilesAreRefused) {
  EXPECT_THROW(parse_expect("changed foo\n"), std::runtime_error);          // no description
  EXPECT_THROW(parse_expect("# t\nchnaged foo\n"), std::runtime_error);     // typo
  EXPECT_THROW(parse_expect("# t\nchanged\n"), std::runtime_error);         // no name
  EXPECT_THROW(parse_expect("# t\nexit zero\n"), std::runtime_error);
  EXPECT_THROW(parse_expect("# t\nexit 7\n"), std::runtime_error);
  EXPECT_THROW(parse_expect("# t\nchanged @O2 foo\n"), std::runtime_error);  // modes not last
  EXPECT_THROW(parse_expect("# t\nany? foo\n"), std::runtime_error);
  auto e = parse_expect("# t\ncflags -fPIC -fno-semantic-interposition  # why\nchanged foo  # comment\nexit 0\n");
  EXPECT_EQ(e.cflags(), (std::vector<std::string>{"-fPIC", "-fno-semantic-interposition"}));
  EXPECT_EQ(e.description, "t");
}

}  // namespace
