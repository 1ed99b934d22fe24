#include "update/contents.h"

#include <filesystem>

#include "update/update.h"

namespace ls::update {

namespace {

std::string fnv1a_hex(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return fmt::format("{:016x}", h);
}

uint32_t index_or_zero(const nlohmann::ordered_json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  return it->get<uint32_t>();
}

}  // namespace

std::string FunctionPatch::label() const {
  return std::filesystem::path(object).filename().string() + ":" + name;
}

const RunSymbol* Contents::run_symbol(uint32_t index) const {
  for (const auto& r : run_symbols)
    if (r.index == index) return &r;
  return nullptr;
}

Contents Contents::load(const std::string& path) {
  auto manifest = read_manifest(path);
  Contents c{elf::Object::load(path)};
  c.id = fnv1a_hex(c.file.image());
  try {
    std::vector<std::string> target_names;
    for (const auto& t : manifest.at("targets")) target_names.push_back(t.at("name"));
    c.targets = target_names;
    const auto& objects = manifest.at("objects");
    auto targets_of = [&](const nlohmann::ordered_json& o) {
      std::vector<std::string> names;
      for (const auto& t : o.at("targets")) names.push_back(target_names.at(t.get<size_t>()));
      return names;
    };
    for (const auto& f : manifest.at("functions")) {
      FunctionPatch p;
      p.name = f.at("name");
      size_t obj = f.at("object");
      const auto& o = objects.at(obj);
      p.object = o.at("path");
      p.source = o.at("source");
      p.targets = targets_of(o);
      p.status = f.at("status");
      p.local = f.value("local", false);
      p.replace = f.value("replace", false);
      p.pre_section = index_or_zero(f, "pre_section");
      p.post_section = index_or_zero(f, "post_section");
      p.post_symbol = index_or_zero(f, "post_symbol");
      if (f.contains("pre_size") && !f["pre_size"].is_null()) p.pre_size = f["pre_size"];
      if (f.contains("post_size") && !f["post_size"].is_null()) p.post_size = f["post_size"];
      if (p.replace && (p.pre_section == 0 || p.post_symbol == 0))
        fail("{}: function {} is to be replaced but has no pre code or no new code", path, p.name);
      c.functions.push_back(std::move(p));
    }
    for (const auto& r : manifest.at("run_symbols")) {
      RunSymbol s;
      s.index = r.at("index");
      s.name = r.at("name");
      s.local = r.value("local", false);
      s.section = r.value("kind", "symbol") == "section";
      s.hidden = r.value("hidden", false);
      s.source = r.value("source", "");
      if (auto obj = r.find("object"); obj != r.end() && !obj->is_null()) {
        const auto& o = objects.at(obj->get<size_t>());
        s.object = o.at("path");
        s.targets = targets_of(o);
      }
      c.run_symbols.push_back(std::move(s));
    }
    for (const auto& s : manifest.at("sections"))
      if (s.at("role") == "post") c.post_sections.push_back(s.at("index"));
      else if (s.at("role") == "special") c.special_sections.emplace_back(s.at("index").get<uint32_t>(), s.value("original", std::string()));
    if (auto k = manifest.find("kernel"); k != manifest.end() && k->is_object())
      c.kernel_release = k->value("release", "");
    c.patch_name = manifest.at("patch").value("name", "");
    c.patch_text = manifest.at("patch").value("text", "");
  } catch (const nlohmann::json::exception& e) {
    fail("{}: manifest is incomplete: {}", path, e.what());
  }
  return c;
}

}  // namespace ls::update
