// The update writer given ObjectDiffs built by hand over real gcc objects, read back
// through the ELF layer, readelf and `livesplice info`; and the reader refusing files
// that are not usable updates.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "differ/differ.h"
#include "elf/object.h"
#include "support.h"
#include "update/manifest.h"
#include "update/writer.h"

namespace fs = std::filesystem;
using lstest::TempDir;
using ls::diff::Status;
using ls::diff::UnitKind;

namespace {

const char* kPre = R"(#include <stdio.h>
static int counter;
static __attribute__((noinline)) int helper(int x) { return x + counter; }
int f(int x) { counter++; printf("f %d\n", x); return helper(x) + 1; }
int g(int x) { return x * 3; }
)";

const char* kPost = R"(#include <stdio.h>
static int counter;
static __attribute__((noinline)) int helper(int x) { return x - counter; }
__attribute__((noinline)) int newfn(int x) { return x - 1; }
int f(int x) { counter += 2; printf("f(%d)\n", x); return helper(newfn(x)); }
int g(int x) { return x * 3; }
int newdata = 7;
)";

const char* kOtherPre = "static __attribute__((noinline)) int helper(int x) { return x * 2; }\n"
                        "int other(int x) { return helper(x); }\n";
const char* kOtherPost = "static __attribute__((noinline)) int helper(int x) { return x * 4; }\n"
                         "int other(int x) { return helper(x); }\n";

ls::diff::SymbolDiff entry(const ls::elf::Object& pre, const ls::elf::Object& post, const std::string& name,
                           UnitKind kind, Status st) {
  ls::diff::SymbolDiff s;
  s.name = name;
  s.kind = kind;
  s.status = st;
  s.reason = "by hand";
  s.included = st != Status::Same;
  if (auto* p = pre.find_symbol(name)) {
    s.pre_symbol = static_cast<int>(p->index);
    s.pre_size = p->size;
    s.pre_section = pre.section(p->section).name;
    s.local = p->local();
  }
  if (auto* p = post.find_symbol(name)) {
    s.post_symbol = static_cast<int>(p->index);
    s.post_size = p->size;
    s.post_section = post.section(p->section).name;
    s.local = p->local();
  }
  return s;
}

class UpdateFile : public ::testing::Test {
 protected:
  void SetUp() override {
    lstest::require_tools({"gcc", "readelf"});
    auto compile = [&](const char* text, const std::string& name) {
      lstest::write_file(dir / (name + ".c"), text);
      auto r = lstest::run({"gcc", "-O2", "-g", "-ffunction-sections", "-fdata-sections", "-fPIE", "-c", name + ".c",
                            "-o", name + ".o"},
                           dir.path());
      ASSERT_EQ(r.status, 0) << r.err;
    };
    compile(kPre, "pre");
    compile(kPost, "post");
    compile(kOtherPre, "other_pre");
    compile(kOtherPost, "other_post");
    pre = ls::elf::Object::load(dir / "pre.o");
    post = ls::elf::Object::load(dir / "post.o");
    opre = ls::elf::Object::load(dir / "other_pre.o");
    opost = ls::elf::Object::load(dir / "other_post.o");

    d1.pre_path = pre.path();
    d1.post_path = post.path();
    d1.symbols = {entry(pre, post, "f", UnitKind::Func, Status::Changed),
                  entry(pre, post, "helper", UnitKind::Func, Status::Changed),
                  entry(pre, post, "newfn", UnitKind::Func, Status::New),
                  entry(pre, post, "g", UnitKind::Func, Status::Same),
                  entry(pre, post, "newdata", UnitKind::Object, Status::New)};
    // The literal pool of f (gcc names it .rodata.f.str1.1 or .rodata.str1.1).
    for (const auto& s : post.sections())
      if (s.name.find(".str1.") != std::string::npos) d1.included_anonymous_sections.push_back(s.index);
    ASSERT_EQ(d1.included_anonymous_sections.size(), 1u);
    literal = ".livesplice.post" + post.section(d1.included_anonymous_sections[0]).name;
    d2.symbols = {entry(opre, opost, "helper", UnitKind::Func, Status::Changed)};

    input.patch_name = "fix.patch";
    input.patch_text = "--- a/post.c\n+++ b/post.c\n";
    input.patch_files = {"post.c", "other.c"};
    input.build_system = "make";
    input.targets = {{"prog", "bin/prog", "executable", "00aa", "00aa", "11bb"},
                     {"libother.so", "libother.so", "shared-library", "22cc", "", "22cc"}};
    input.units = {{&pre, &post, &d1, "post.o", "post.c", {0}, ls::update::PreOrigin::PreBuild},
                   {&opre, &opost, &d2, "other.o", "other.c", {1}, ls::update::PreOrigin::Recompiled}};
  }

  std::string write() {
    ls::Context ctx;
    summary = ls::update::write_update(ctx, input, dir / "fix.lsu");
    return dir / "fix.lsu";
  }

  TempDir dir;
  ls::elf::Object pre, post, opre, opost;
  ls::diff::ObjectDiff d1, d2;
  ls::update::UpdateInput input;
  ls::update::WriteSummary summary;
  std::string literal;
};

const nlohmann::ordered_json* find_named(const nlohmann::ordered_json& list, const std::string& name, size_t object) {
  for (const auto& e : list)
    if (e["name"] == name && e["object"] == object) return &e;
  return nullptr;
}

// A forged update: the file edited in place and its digest recomputed, as a buggy or
// hostile writer would. Only the schema stands between it and apply.
void reseal(std::string& bytes) {
  std::vector<uint8_t> v(bytes.begin(), bytes.end());
  ls::update::seal(v, "forged.lsu");
  bytes.assign(v.begin(), v.end());
}

// Replaces `from` (first occurrence at or after `after`) by `to`, same length: the
// manifest is one ELF section, so its size must stay.
void edit(std::string& bytes, const std::string& from, const std::string& to, const std::string& after = "") {
  ASSERT_EQ(from.size(), to.size());
  auto at = bytes.find(from, after.empty() ? 0 : bytes.find(after));
  ASSERT_NE(at, std::string::npos) << from;
  bytes.replace(at, from.size(), to);
}

}  // namespace

TEST_F(UpdateFile, CarriesPreAndPostCodeWithSymbolicRelocations) {
  std::string path = write();
  EXPECT_EQ(summary.functions_changed, 3u);
  EXPECT_EQ(summary.functions_new, 1u);
  EXPECT_EQ(summary.data_new, 1u);

  auto m = ls::update::read_manifest(path).json;
  EXPECT_EQ(m["format"], "livesplice-update");
  EXPECT_EQ(m["version"], 3);
  EXPECT_EQ(m["targets"][0]["build_id"], "00aa");
  EXPECT_EQ(m["targets"][1]["original_build_id"], nullptr);
  EXPECT_EQ(m["patch"]["files"], nlohmann::json::array({"post.c", "other.c"}));
  EXPECT_EQ(m["objects"][1]["pre"], "recompiled");

  // The ELF layer validates every range, link and relocation of the file.
  auto u = ls::elf::Object::load(path);
  auto section_name = [&](const nlohmann::ordered_json& idx) { return u.section(idx.get<uint32_t>()).name; };

  const auto* f = find_named(m["functions"], "f", 0);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ((*f)["status"], "changed");
  EXPECT_EQ((*f)["replace"], true);
  EXPECT_EQ(section_name((*f)["pre_section"]), ".livesplice.pre.text.f");
  EXPECT_EQ(section_name((*f)["post_section"]), ".livesplice.post.text.f");
  EXPECT_EQ(u.symbol((*f)["post_symbol"].get<uint32_t>()).name, "f");
  EXPECT_FALSE(u.section((*f)["pre_section"].get<uint32_t>()).alloc()) << "pre code is never loaded";
  EXPECT_TRUE(u.section((*f)["post_section"].get<uint32_t>()).alloc());

  // Pre code refers to the running program, and to the pre literal pools that travel
  // with it (never loaded: the matcher compares the running literals with them); post f
  // calls the update's newfn and helper and reads the update's copy of its string literal.
  size_t literal_sites = 0;
  for (const auto& r : u.section((*f)["pre_section"].get<uint32_t>()).relocs) {
    const auto& s = u.symbol(r.symbol);
    if (!s.defined()) continue;
    const auto& pool = u.section(s.section);
    EXPECT_TRUE(pool.name.starts_with(".livesplice.pre.") && pool.merge_strings() && !pool.alloc()) << pool.name;
    std::string at(reinterpret_cast<const char*>(pool.bytes.data()) + s.value + r.addend + 4);
    EXPECT_EQ(at, "f %d\n") << "the pre literal at the site";
    ++literal_sites;
  }
  EXPECT_EQ(literal_sites, 1u) << "f's printf format is its one literal";
  std::set<std::string> post_targets;
  for (const auto& r : u.section((*f)["post_section"].get<uint32_t>()).relocs) {
    const auto& s = u.symbol(r.symbol);
    post_targets.insert((s.defined() ? "update:" : "run:") +
                        (s.type == ls::elf::SymbolType::Section ? u.section(s.section).name : s.name));
  }
  EXPECT_TRUE(post_targets.count("update:newfn")) << fmt::format("{}", fmt::join(post_targets, " "));
  EXPECT_TRUE(post_targets.count("update:helper") || post_targets.count("update:.livesplice.post.text.helper"));
  EXPECT_TRUE(post_targets.count("update:" + literal) || post_targets.count("update:.LC0"))
      << fmt::format("{}", fmt::join(post_targets, " "));
  EXPECT_TRUE(post_targets.count("run:printf"));
  EXPECT_TRUE(post_targets.count("run:counter")) << "static data: the running program's instance";

  // Same-named statics in two objects: both carried, told apart by object.
  const auto* h0 = find_named(m["functions"], "helper", 0);
  const auto* h1 = find_named(m["functions"], "helper", 1);
  ASSERT_TRUE(h0 && h1);
  EXPECT_NE((*h0)["post_section"], (*h1)["post_section"]);
  EXPECT_EQ(section_name((*h1)["post_section"]), ".livesplice.post.text.helper");
  EXPECT_EQ((*h0)["local"], true);

  const auto* nd = find_named(m["data"], "newdata", 0);
  ASSERT_NE(nd, nullptr);
  EXPECT_EQ((*nd)["carried"], true);
  EXPECT_EQ(section_name((*nd)["post_section"]), ".livesplice.post.data.newdata");
  EXPECT_EQ(find_named(m["functions"], "g", 0), nullptr) << "unchanged functions are not listed";

  size_t counters = 0;
  for (const auto& r : m["run_symbols"]) {
    EXPECT_FALSE(u.symbol(r["index"].get<uint32_t>()).defined());
    EXPECT_EQ(u.symbol(r["index"].get<uint32_t>()).name, r["name"]);
    if (r["name"] == "counter") {
      ++counters;
      EXPECT_EQ(r["local"], true);
      EXPECT_EQ(r["object"], 0);
      EXPECT_EQ(r["source"], "post.c");
    }
  }
  EXPECT_EQ(counters, 1u) << "pre and post references to the same static share one run symbol";

  // readelf reads every part of it without complaint.
  auto all = lstest::run({"readelf", "-a", "-W", path});
  EXPECT_EQ(all.status, 0);
  EXPECT_EQ(all.err, "");
  EXPECT_NE(all.out.find("Relocation section '.rela.livesplice.post.text.f'"), std::string::npos);
  EXPECT_NE(all.out.find(".livesplice.manifest"), std::string::npos);
}

TEST_F(UpdateFile, InfoPrintsTheManifest) {
  std::string path = write();
  auto text = lstest::run({lstest::livesplice(), "info", path});
  ASSERT_EQ(text.status, 0) << text.err;
  for (const char* want : {"target prog (executable, bin/prog)", "build-id 00aa", "changed", "newfn", "newdata",
                           "post.c, other.c", "other.o"})
    EXPECT_NE(text.out.find(want), std::string::npos) << want << "\n" << text.out;
  auto json = lstest::run({lstest::livesplice(), "info", "--json", path});
  ASSERT_EQ(json.status, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["functions"].size(), 4u);
}

class UpdateFileRefused : public UpdateFile {
 protected:
  // `content` as NAME is refused by the reader and by `livesplice info` (exit 1), with
  // a message naming the file and saying `says`.
  void expect_refused(const std::string& name, const std::string& content, const std::string& says) {
    SCOPED_TRACE(name);
    std::string p = dir / name;
    lstest::write_file(p, content);
    try {
      ls::update::read_manifest(p);
      ADD_FAILURE() << name << " was accepted";
    } catch (const ls::Error& e) {
      EXPECT_EQ(e.code(), ls::Exit::ToolError);
      EXPECT_TRUE(std::string(e.what()).starts_with(p + ": ")) << "names the file: " << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("json.exception"), std::string::npos) << e.what();
    }
    auto r = lstest::run({lstest::livesplice(), "info", p});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
  }
};

TEST_F(UpdateFile, IsDeterministicAndCarriesItsDigest) {
  setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  std::string first = lstest::read_file(write());
  std::string second = lstest::read_file(write());
  unsetenv("SOURCE_DATE_EPOCH");
  EXPECT_TRUE(first == second) << "same inputs, same bytes";
  auto m = ls::update::read_manifest(dir / "fix.lsu");
  EXPECT_EQ(m.digest.size(), ls::update::kDigestSize);
  EXPECT_TRUE(m.digest.starts_with("sha256:")) << m.digest;
  EXPECT_NE(first.find(m.digest), std::string::npos) << "stored in the file";
  auto info = lstest::run({lstest::livesplice(), "info", dir / "fix.lsu"});
  EXPECT_NE(info.out.find("digest " + m.digest + " (verified)"), std::string::npos) << info.out;
}

// One flipped bit anywhere (here: in f's new code) and the update is refused before
// anything reads it.
TEST_F(UpdateFileRefused, CorruptedFile) {
  std::string bytes = lstest::read_file(write());
  auto u = ls::elf::Object::load(dir / "fix.lsu");
  const auto* code = u.find_section(".livesplice.post.text.f");
  ASSERT_NE(code, nullptr);
  std::string flipped = bytes;
  flipped[static_cast<size_t>(code->bytes.data() - u.image().data()) + 3] ^= 0x10;
  expect_refused("flipped.lsu", flipped, "its contents do not match its digest (stored sha256:");
  std::string pre_flipped = bytes;
  const auto* pre_code = u.find_section(".livesplice.pre.text.f");
  ASSERT_NE(pre_code, nullptr);
  pre_flipped[static_cast<size_t>(pre_code->bytes.data() - u.image().data())] ^= 0x01;
  expect_refused("pre_flipped.lsu", pre_flipped, "do not match its digest");
  std::string manifest = bytes;
  edit(manifest, "\"replace\": true", "\"replace\": fals");
  expect_refused("manifest.lsu", manifest, "do not match its digest");
}

// Forged manifests (digest recomputed): every field known, present, of its type.
TEST_F(UpdateFileRefused, ManifestBreakingTheSchema) {
  std::string bytes = lstest::read_file(write());
  std::string renamed = bytes;
  edit(renamed, "\"replace\"", "\"rep|ace\"");
  reseal(renamed);
  expect_refused("renamed.lsu", renamed, "manifest field /functions/0/replace: missing (must be true or false)");

  // A run symbol without its index: named with the file and the field.
  std::string no_index = bytes;
  auto at = no_index.find("\"index\"", no_index.find("\"run_symbols\""));
  ASSERT_NE(at, std::string::npos);
  auto comma = no_index.find(',', at);
  no_index.replace(at, comma + 1 - at, std::string(comma + 1 - at, ' '));
  reseal(no_index);
  expect_refused("no_index.lsu", no_index, "manifest field /run_symbols/0/index: missing (must be an unsigned integer)");

  std::string typed = bytes;
  edit(typed, "\"local\": true", "\"local\": 1   ", "\"run_symbols\"");
  reseal(typed);
  expect_refused("typed.lsu", typed, "/local: is number, must be true or false");

  std::string status = bytes;
  edit(status, "\"status\": \"changed\"", "\"status\": \"chan|ed\"");
  reseal(status);
  expect_refused("status.lsu", status, "manifest field /functions/0/status: \"chan|ed\" is not one of changed, new, removed");
}

// A key that is not in the schema at all.
TEST_F(UpdateFileRefused, UnknownManifestField) {
  std::string bytes = lstest::read_file(write());
  // A shorter patch name makes room for a key no reader knows.
  edit(bytes, "\"name\": \"fix.patch\"", "\"name\":\"fix.\",\"x\":0");
  reseal(bytes);
  expect_refused("unknown_key.lsu", bytes, "manifest field /patch/x: unknown field");
}

TEST_F(UpdateFileRefused, WhatIsNotAUsableUpdate) {
  std::string good = write();
  std::string bytes = lstest::read_file(good);
  expect_refused("text.lsu", "hello\n", "not a usable livesplice update");
  expect_refused("object.lsu", lstest::read_file(dir / "pre.o"), "it has no .livesplice.digest section");
  expect_refused("truncated.lsu", bytes.substr(0, bytes.size() / 2), "not a usable livesplice update");
  std::string newer = bytes;
  auto at = newer.find("\"version\": 3,");
  ASSERT_NE(at, std::string::npos);
  newer.replace(at, 13, "\"version\": 9,");
  reseal(newer);
  expect_refused("newer.lsu", newer, "update format version 9; this livesplice");
  std::string other = bytes;
  at = other.find("\"format\": \"livesplice-update\"");
  ASSERT_NE(at, std::string::npos);
  other.replace(at + 10, 19, "\"something-elsexxx\"");
  reseal(other);
  expect_refused("other.lsu", other, "does not say \"format\"");
}
