#include "update/contents.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "update/format.h"

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

}  // namespace

std::string FunctionPatch::label() const {
  return std::filesystem::path(object).filename().string() + ":" + name;
}

const RunSymbol* Contents::run_symbol(uint32_t index) const {
  auto it = std::lower_bound(run_symbols.begin(), run_symbols.end(), index,
                             [](const RunSymbol& r, uint32_t i) { return r.index < i; });
  return it != run_symbols.end() && it->index == index ? &*it : nullptr;
}

Contents Contents::load(const std::string& path) { return from(load_file(path)); }

Contents Contents::from(elf::Object file) {
  Manifest m = read_manifest(file);   // the digest first, then the schema
  return described(std::move(file), std::move(m));
}

Contents Contents::unsealed(elf::Object file) {
  Contents c;
  if (file.find_section(kManifestSection)) {
    Manifest m = parse_manifest(file);
    c = described(std::move(file), std::move(m));
  } else {
    c.file = std::move(file);
    c.id = fnv1a_hex(c.file.image());
  }
  c.post_sections.clear();
  for (const auto& s : c.file.sections())
    if (s.alloc() && carries_object_section(s.name, kPostPrefix)) c.post_sections.push_back(s.index);
  return c;
}

std::string HookPatch::label() const { return fmt::format("{} hook {}:{}", to_string(kind), object, name); }

Contents Contents::described(elf::Object file, Manifest manifest) {
  Contents c;
  c.file = std::move(file);
  c.manifest = std::move(manifest);
  const Manifest& m = c.manifest;
  c.id = fnv1a_hex(c.file.image());
  for (const auto& t : m.targets) c.targets.push_back(t.name);
  auto targets_of = [&](const ManifestObject& o) {
    std::vector<std::string> names;
    for (size_t t : o.targets) names.push_back(m.targets[t].name);
    return names;
  };
  for (const auto& f : m.functions) {
    const auto& o = m.objects[f.object];
    c.functions.push_back({f.name, o.path, o.source, targets_of(o), f.status, f.local, f.replace, f.pre_section,
                           f.post_section, f.post_symbol, f.pre_size.value_or(0), f.post_size.value_or(0)});
  }
  for (const auto& r : m.run_symbols) {
    RunSymbol s{r.index, r.name, r.local, r.section, r.hidden, {}, r.source, {}};
    if (r.object) {
      s.object = m.objects[*r.object].path;
      s.targets = targets_of(m.objects[*r.object]);
    }
    c.run_symbols.push_back(std::move(s));
  }
  // The manifest lists them in the writer's order; lookups go by index.
  std::stable_sort(c.run_symbols.begin(), c.run_symbols.end(),
                   [](const RunSymbol& a, const RunSymbol& b) { return a.index < b.index; });
  for (const auto& s : m.sections)
    if (s.role == "post") c.post_sections.push_back(s.index);
    else if (s.role == "special") c.special_sections.emplace_back(s.index, s.original);
  for (const auto& h : m.hooks) c.hooks.push_back({h.kind, h.name, m.objects[h.object].path, h.post_symbol});
  c.kernel_release = m.kernel_release;
  c.patch_name = m.patch_name;
  c.patch_text = m.patch_text;
  return c;
}

}  // namespace ls::update
