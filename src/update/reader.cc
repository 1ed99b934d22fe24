// Reading an update back: `livesplice info`.
//
// The file goes through the ELF layer's full validation (every range, link and
// relocation) before its manifest is trusted; then every index the manifest holds is
// checked against the sections and symbols really there, so that later stages (apply)
// can index without checking again. A file that fails any of this is "not a usable
// update" with the reason, exit 1.
#include <algorithm>
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "update/update.h"

namespace ls::update {
namespace {

using Json = nlohmann::ordered_json;

[[noreturn]] void invalid(const std::string& path, const std::string& why) {
  throw Error(fmt::format("{}: not a usable livesplice update: {}", path, why));
}

void check_index(const std::string& path, const Json& e, const char* key, size_t limit, const char* what) {
  if (!e.contains(key) || e[key].is_null()) return;
  if (!e[key].is_number_unsigned() || e[key].get<uint64_t>() >= limit)
    invalid(path, fmt::format("manifest entry '{}' refers to {} {}, which does not exist",
                              e.value("name", "?"), what, e[key].dump()));
}

std::string hex_size(const Json& v) {
  return v.is_number() ? fmt::format("{:#x}", v.get<uint64_t>()) : "-";
}

std::string str(const Json& v, const char* fallback = "-") {
  return v.is_string() ? v.get<std::string>() : std::string(fallback);
}

}  // namespace

Json read_manifest(const std::string& path) {
  elf::Object obj;
  try {
    obj = elf::Object::load(path);
  } catch (const Error& e) {
    invalid(path, e.what());
  }
  const elf::Section* sec = obj.find_section(kManifestSection);
  if (!sec) invalid(path, fmt::format("it has no {} section", kManifestSection));
  Json j;
  try {
    j = Json::parse(sec->bytes.begin(), sec->bytes.end());
  } catch (const nlohmann::json::exception& e) {
    invalid(path, fmt::format("{}: {}", ls::where(path, kManifestSection), e.what()));
  }
  if (!j.is_object() || j.value("format", "") != kFormatName)
    invalid(path, fmt::format("{} does not say \"format\": \"{}\"", kManifestSection, kFormatName));
  if (!j.contains("version") || !j["version"].is_number_integer())
    invalid(path, "the manifest has no format version");
  if (int v = j["version"].get<int>(); v != kFormatVersion)
    throw Error(fmt::format("{}: update format version {}; this livesplice ({}) reads version {}", path, v,
                            kToolVersion, kFormatVersion));
  for (const char* key : {"targets", "objects", "functions", "data", "sections", "run_symbols"})
    if (!j.contains(key) || !j[key].is_array()) invalid(path, fmt::format("the manifest has no \"{}\" list", key));

  size_t nsec = obj.sections().size(), nsym = obj.symbols().size();
  size_t nobj = j["objects"].size(), ntarget = j["targets"].size();
  for (const auto& o : j["objects"])
    for (const auto& t : o.value("targets", Json::array()))
      if (!t.is_number_unsigned() || t.get<size_t>() >= ntarget)
        invalid(path, fmt::format("object {} refers to target {}", o.value("path", "?"), t.dump()));
  for (const char* list : {"functions", "data"})
    for (const auto& e : j[list]) {
      check_index(path, e, "object", nobj, "object");
      check_index(path, e, "pre_section", nsec, "section");
      check_index(path, e, "post_section", nsec, "section");
      check_index(path, e, "pre_symbol", nsym, "symbol");
      check_index(path, e, "post_symbol", nsym, "symbol");
    }
  for (const auto& s : j["sections"]) {
    check_index(path, s, "index", nsec, "section");
    check_index(path, s, "object", nobj, "object");
    const auto& real = obj.section(s["index"].get<uint32_t>());
    if (real.name != s.value("name", ""))
      invalid(path, fmt::format("manifest names section {} '{}', the file calls it '{}'", s["index"].dump(),
                                s.value("name", ""), real.name));
  }
  for (const auto& r : j["run_symbols"]) {
    check_index(path, r, "index", nsym, "symbol");
    check_index(path, r, "object", nobj, "object");
    if (obj.symbol(r["index"].get<uint32_t>()).defined())
      invalid(path, fmt::format("run symbol {} ('{}') is defined in the update", r["index"].dump(),
                                r.value("name", "")));
  }
  return j;
}

Exit run_info(Context& ctx, const std::string& path) {
  Json j = read_manifest(path);
  if (ctx.json) {
    fmt::print("{}\n", j.dump(2));
    return Exit::Ok;
  }
  const auto& objects = j["objects"];
  const auto& targets = j["targets"];
  auto object_name = [&](const Json& e) {
    size_t k = e.value("object", size_t{0});
    return k < objects.size() ? objects[k].value("path", "?") : std::string("?");
  };
  auto size_of = [](const std::string& p) {
    std::error_code ec;
    auto n = std::filesystem::file_size(p, ec);
    return ec ? std::string("?") : fmt::format("{} bytes", n);
  };

  fmt::print("{}: livesplice update (format {}, made by livesplice {} on {}), {}\n", path,
             j["version"].get<int>(), str(j["livesplice_version"]), str(j["created"]), size_of(path));
  // Kernel updates name the kernel by release; their targets are vmlinux and modules.
  if (j.contains("kernel") && j["kernel"].is_object())
    fmt::print("kernel {} (Linux {}){}\n", str(j["kernel"]["release"]), str(j["kernel"]["version"]),
               j["kernel"].contains("module_section")
                   ? fmt::format(", its new code's module made from the skeleton in section {}",
                                 j["kernel"]["module_section"].dump())
                   : std::string(", no skeleton module (made before apply --kernel loaded modules)"));
  for (const auto& t : targets) {
    fmt::print("target {} ({}, {})\n", str(t["name"]), str(t["kind"]), str(t["path"]));
    if (str(t["kind"]).rfind("kernel", 0) == 0) continue;
    fmt::print("  build-id {}", str(t["build_id"], "(none)"));
    if (t["original_build_id"].is_null()) fmt::print("  (not built before create: pre build's)\n");
    else fmt::print("  (as built before create)\n");
    if (t["pre_build_id"].is_string() && t["pre_build_id"] != t["build_id"])
      fmt::print("  pre build's build-id {}\n", str(t["pre_build_id"]));
  }
  if (targets.empty()) fmt::print("target: unknown (no link of the rebuilt objects was seen)\n");

  const auto& patch = j.contains("patch") ? j["patch"] : Json::object();
  auto files = patch.value("files", std::vector<std::string>{});
  fmt::print("patch {} ({} file{}): {}\n", patch.value("name", "?"), files.size(), files.size() == 1 ? "" : "s",
             fmt::join(files, ", "));

  fmt::print("objects:\n");
  for (const auto& o : objects) {
    std::vector<std::string> tnames;
    for (const auto& t : o.value("targets", Json::array())) tnames.push_back(str(targets[t.get<size_t>()]["name"]));
    fmt::print("  {:<28} from {:<20} in {:<16} (pre object: {})\n", o.value("path", "?"), o.value("source", "?"),
               tnames.empty() ? std::string("?") : fmt::format("{}", fmt::join(tnames, ", ")), o.value("pre", "?"));
    for (const auto& n : o.value("notes", std::vector<std::string>{})) fmt::print("      note: {}\n", n);
  }

  size_t width = 8;
  for (const auto& f : j["functions"]) width = std::max(width, f.value("name", "").size() + (f.value("local", false) ? 9 : 0));
  fmt::print("functions:\n");
  for (const auto& f : j["functions"]) {
    std::string name = f.value("name", "?") + (f.value("local", false) ? " (static)" : "");
    fmt::print("  {:<8} {:<{}}  pre {:>6}  post {:>6}  {}{}\n", f.value("status", "?"), name, width,
               hex_size(f["pre_size"]), hex_size(f["post_size"]), object_name(f),
               f["parent"].is_string() ? fmt::format("  (part of {})", f["parent"].get<std::string>()) : "");
    if (f.value("reason", "") != "" && ctx.verbose) fmt::print("           {}\n", f.value("reason", ""));
  }
  if (!j["data"].empty()) {
    fmt::print("data:\n");
    for (const auto& d : j["data"])
      fmt::print("  {:<8} {:<{}}  size {:>6}  {}{}\n", d.value("status", "?"),
                 d.value("name", "?") + (d.value("local", false) ? " (static)" : ""), width, hex_size(d["size"]),
                 object_name(d), d.value("carried", false) ? "" : "  (not carried)");
  }
  size_t pre = 0, post = 0;
  for (const auto& s : j["sections"]) (s.value("role", "") == "pre" ? pre : post)++;
  size_t local_run = std::count_if(j["run_symbols"].begin(), j["run_symbols"].end(),
                                   [](const Json& r) { return r.value("local", false); });
  fmt::print("carries {} pre and {} post sections; {} run symbols ({} file-local)\n", pre, post,
             j["run_symbols"].size(), local_run);
  return Exit::Ok;
}

}  // namespace ls::update
