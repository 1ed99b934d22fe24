// Checking an update file before anything reads it (see manifest.h).
//
// The schema lives in the code below, one reader per list, each going through Fields:
// a field is taken with the JSON type it must have (null only where the writer writes
// null), and once an entry's fields are taken, any key left over is an unknown field.
// That is what turns a corrupted key (`"rep|ace"`) into an error instead of a default
// that half-applies a fix.
#include "update/manifest.h"

#include <openssl/evp.h>

#include <algorithm>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "update/format.h"

namespace ls::update {
namespace {

using Json = nlohmann::ordered_json;

[[noreturn]] void invalid(const std::string& file, const std::string& why) {
  throw Error(fmt::format("{}: not a usable livesplice update: {}", file, why));
}

// nlohmann's messages start with "[json.exception.parse_error.101] ": keep what follows.
std::string json_reason(const nlohmann::json::exception& e) {
  std::string_view w = e.what();
  auto at = w.find("] ");
  return std::string(at == std::string_view::npos ? w : w.substr(at + 2));
}

// The fields of one JSON object of the manifest, at JSON pointer `at`.
class Fields {
 public:
  Fields(const std::string& file, const Json& j, std::string at) : file_(file), j_(j), at_(std::move(at)) {
    if (!j.is_object()) bad_value("", fmt::format("is {}, not an object", j.type_name()));
  }

  bool has(const char* key) const { return j_.contains(key); }
  std::string str(const char* key) { return take(key, false, &Json::is_string, "a string").get<std::string>(); }
  std::string nullable_str(const char* key) {
    const Json& v = take(key, true, &Json::is_string, "a string or null");
    return v.is_null() ? std::string() : v.get<std::string>();
  }
  std::string one_of(const char* key, std::initializer_list<std::string_view> values) {
    std::string v = str(key);
    if (std::find(values.begin(), values.end(), v) == values.end())
      bad_value(key, fmt::format("\"{}\" is not one of {}", v, fmt::join(values, ", ")));
    return v;
  }
  bool boolean(const char* key) { return take(key, false, &Json::is_boolean, "true or false").get<bool>(); }
  uint64_t number(const char* key) {
    return take(key, false, &Json::is_number_unsigned, "an unsigned integer").get<uint64_t>();
  }
  std::optional<uint64_t> nullable_number(const char* key) {
    const Json& v = take(key, true, &Json::is_number_unsigned, "an unsigned integer or null");
    return v.is_null() ? std::nullopt : std::optional<uint64_t>(v.get<uint64_t>());
  }
  // An index into a list of `limit` `what`s; `first` is 1 for sections and symbols
  // (entry 0 of an ELF table is the null entry).
  uint64_t index(const char* key, size_t limit, std::string_view what, uint64_t first = 0) {
    return in_range(key, number(key), limit, what, first);
  }
  uint32_t nullable_index(const char* key, size_t limit, std::string_view what) {
    auto v = nullable_number(key);
    return v ? static_cast<uint32_t>(in_range(key, *v, limit, what, 1)) : 0;
  }
  std::vector<std::string> strings(const char* key) {
    std::vector<std::string> out;
    size_t k = 0;
    for (const auto& e : list(key)) {
      if (!e.is_string()) bad_value(fmt::format("{}/{}", key, k), fmt::format("is {}, not a string", e.type_name()));
      out.push_back(e.get<std::string>());
      ++k;
    }
    return out;
  }
  const Json& list(const char* key) { return take(key, false, &Json::is_array, "a list"); }
  const Json& object(const char* key) { return take(key, false, &Json::is_object, "an object"); }
  std::string at(const char* key) const { return at_ + "/" + key; }

  // Every key of the object has been taken: anything else is unknown.
  void done() const {
    for (const auto& [key, value] : j_.items())
      if (!taken_.count(key)) invalid(file_, fmt::format("manifest field {}/{}: unknown field", at_, key));
  }

  [[noreturn]] void bad_value(std::string_view key, const std::string& why) const {
    invalid(file_, fmt::format("manifest field {}{}{}: {}", at_, key.empty() ? "" : "/", key, why));
  }

 private:
  const Json& take(const char* key, bool nullable, bool (Json::*is)() const noexcept, const char* what) {
    auto it = j_.find(key);
    if (it == j_.end()) bad_value(key, fmt::format("missing (must be {})", what));
    taken_.insert(key);
    if (!(nullable && it->is_null()) && !((*it).*is)())
      bad_value(key, fmt::format("is {}, must be {}", it->type_name(), what));
    return *it;
  }
  uint64_t in_range(const char* key, uint64_t v, size_t limit, std::string_view what, uint64_t first) const {
    if (v < first || v >= limit)
      bad_value(key, fmt::format("{} {} does not exist (the update has {} to {})", what, v, first,
                                 limit == 0 ? std::string("none") : std::to_string(limit - 1)));
    return v;
  }

  const std::string& file_;
  const Json& j_;
  std::string at_;
  std::set<std::string> taken_;
};

// Each list of the manifest: f(Fields of entry k, k).
template <typename F>
void each(const std::string& file, Fields& parent, const char* key, F f) {
  size_t k = 0;
  for (const auto& e : parent.list(key)) {
    Fields fields(file, e, parent.at(key) + "/" + std::to_string(k));
    f(fields, k);
    fields.done();
    ++k;
  }
}

struct Sha256Ctx {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// SHA-256 of `image` with [hole, hole + hole_size) read as zeros, as "sha256:HEX".
std::string digest_of(const std::vector<uint8_t>& image, size_t hole, size_t hole_size) {
  std::unique_ptr<EVP_MD_CTX, Sha256Ctx> c(EVP_MD_CTX_new());
  std::vector<uint8_t> zeros(hole_size, 0);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (!c || EVP_DigestInit_ex(c.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(c.get(), image.data(), hole) != 1 ||
      EVP_DigestUpdate(c.get(), zeros.data(), zeros.size()) != 1 ||
      EVP_DigestUpdate(c.get(), image.data() + hole + hole_size, image.size() - hole - hole_size) != 1 ||
      EVP_DigestFinal_ex(c.get(), md, &len) != 1)
    fail("cannot compute SHA-256 (libcrypto failed)");
  std::string out = std::string(kDigestAlgorithm) + ":";
  for (unsigned i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

// Where the digest section's bytes are in the file's image.
size_t digest_offset(const elf::Object& file) {
  const elf::Section* s = file.find_section(kDigestSection);
  if (!s) invalid(file.path(), fmt::format("it has no {} section (made by an older livesplice, or not an update)",
                                           kDigestSection));
  if (s->nobits() || s->bytes.size() != kDigestSize)
    invalid(file.path(), fmt::format("its {} section holds {} bytes, not {}", kDigestSection, s->bytes.size(),
                                     kDigestSize));
  return static_cast<size_t>(s->bytes.data() - file.image().data());
}

void read_header(Manifest& m, const elf::Object& file, Fields& top) {
  const std::string& path = file.path();
  // Format and version first: a newer format is refused as such, not field by field.
  if (auto f = m.json.find("format"); f == m.json.end() || *f != kFormatName)
    invalid(path, fmt::format("{} does not say \"format\": \"{}\"", kManifestSection, kFormatName));
  top.str("format");
  if (auto v = m.json.find("version"); v == m.json.end() || !v->is_number_unsigned())
    invalid(path, "the manifest has no format version");
  if (uint64_t v = top.number("version"); v != static_cast<uint64_t>(kFormatVersion))
    throw Error(fmt::format("{}: update format version {}; this livesplice ({}) reads version {}", path, v,
                            kToolVersion, kFormatVersion));
  m.livesplice_version = top.str("livesplice_version");
  m.created = top.str("created");
  m.arch = top.one_of("arch", {"x86_64"});
  m.build_system = top.str("build_system");
  if (top.has("label")) m.label = top.str("label");
  if (top.has("kernel")) {
    Fields k(path, top.object("kernel"), top.at("kernel"));
    m.kernel = true;
    m.kernel_release = k.str("release");
    m.kernel_version = k.str("version");
    if (k.has("module_section"))
      m.kernel_module_section = static_cast<uint32_t>(k.index("module_section", file.sections().size(), "section", 1));
    k.done();
  }
  Fields patch(path, top.object("patch"), top.at("patch"));
  m.patch_name = patch.str("name");
  m.patch_files = patch.strings("files");
  m.patch_text = patch.str("text");
  patch.done();
  m.sources = top.strings("sources");
  Fields summary(path, top.object("summary"), top.at("summary"));
  m.functions_changed = summary.number("functions_changed");
  m.functions_new = summary.number("functions_new");
  m.data_new = summary.number("data_new");
  summary.done();
}

void read_lists(Manifest& m, const elf::Object& file, Fields& top) {
  const std::string& path = file.path();
  const size_t nsec = file.sections().size(), nsym = file.symbols().size();
  each(path, top, "targets", [&](Fields& f, size_t) {
    m.targets.push_back({f.str("name"), f.str("path"),
                         f.one_of("kind", {"executable", "shared-library", "relocatable", "kernel", "kernel-module"}),
                         f.nullable_str("build_id"), f.nullable_str("original_build_id"), f.nullable_str("pre_build_id")});
  });
  each(path, top, "objects", [&](Fields& f, size_t) {
    ManifestObject o{f.str("path"), f.str("source"), f.one_of("pre", {"pre-build", "recompiled", "none"}), {}, {}};
    size_t k = 0;
    for (const auto& t : f.list("targets")) {
      if (!t.is_number_unsigned() || t.get<uint64_t>() >= m.targets.size())
        f.bad_value(fmt::format("targets/{}", k), fmt::format("{} is not a target of this update", t.dump()));
      o.targets.push_back(t.get<size_t>());
      ++k;
    }
    o.notes = f.strings("notes");
    m.objects.push_back(std::move(o));
  });
  const size_t nobj = m.objects.size();
  auto read_unit = [&](Fields& f, ManifestUnit& u) {
    u.name = f.str("name");
    u.object = f.index("object", nobj, "object");
    std::string status = f.one_of("status", {to_string(UnitStatus::Changed), to_string(UnitStatus::New),
                                              to_string(UnitStatus::Removed)});
    for (UnitStatus s : {UnitStatus::Changed, UnitStatus::New, UnitStatus::Removed})
      if (status == to_string(s)) u.status = s;
    u.reason = f.str("reason");
    u.local = f.boolean("local");
    u.post_section = f.nullable_index("post_section", nsec, "section");
    u.post_symbol = f.nullable_index("post_symbol", nsym, "symbol");
  };
  each(path, top, "functions", [&](Fields& f, size_t) {
    ManifestFunction e;
    read_unit(f, e);
    e.parent = f.nullable_str("parent");
    e.replace = f.boolean("replace");
    e.pre_size = f.nullable_number("pre_size");
    e.post_size = f.nullable_number("post_size");
    e.pre_section = f.nullable_index("pre_section", nsec, "section");
    e.pre_symbol = f.nullable_index("pre_symbol", nsym, "symbol");
    if (e.replace && (e.pre_section == 0 || e.post_symbol == 0))
      f.bad_value("replace", fmt::format("function {} is to be replaced but has no pre code or no new code", e.name));
    m.functions.push_back(std::move(e));
  });
  each(path, top, "data", [&](Fields& f, size_t) {
    ManifestDatum d;
    read_unit(f, d);
    d.size = f.number("size");
    d.carried = f.boolean("carried");
    m.data.push_back(std::move(d));
  });
  each(path, top, "sections", [&](Fields& f, size_t) {
    ManifestSection s;
    s.index = static_cast<uint32_t>(f.index("index", nsec, "section", 1));
    s.name = f.str("name");
    s.role = f.one_of("role", {"pre", "post", "special"});
    s.object = f.index("object", nobj, "object");
    s.original = f.str("original");
    if (f.has("entries")) s.entries = f.number("entries");
    if (const auto& real = file.section(s.index); real.name != s.name)
      f.bad_value("name", fmt::format("section {} is '{}' in the file, not '{}'", s.index, real.name, s.name));
    m.sections.push_back(std::move(s));
  });
  each(path, top, "run_symbols", [&](Fields& f, size_t) {
    ManifestRunSymbol r;
    r.index = static_cast<uint32_t>(f.index("index", nsym, "symbol", 1));
    r.name = f.str("name");
    r.local = f.boolean("local");
    r.section = f.one_of("kind", {"symbol", "section"}) == "section";
    if (f.has("object")) r.object = f.index("object", nobj, "object");
    if (f.has("source")) r.source = f.str("source");
    if (f.has("hidden")) r.hidden = f.boolean("hidden");
    if (file.symbol(r.index).defined())
      f.bad_value("index", fmt::format("run symbol {} ('{}') is defined in the update", r.index, r.name));
    m.run_symbols.push_back(std::move(r));
  });
  each(path, top, "hooks", [&](Fields& f, size_t) {
    ManifestHook h;
    std::string kind = f.one_of("kind", {"pre_apply", "apply", "post_apply", "pre_undo", "undo", "post_undo"});
    for (HookKind k : {HookKind::PreApply, HookKind::Apply, HookKind::PostApply, HookKind::PreUndo, HookKind::Undo,
                       HookKind::PostUndo})
      if (kind == to_string(k)) h.kind = k;
    h.name = f.str("name");
    h.object = f.index("object", nobj, "object");
    h.function = f.str("function");
    h.post_symbol = static_cast<uint32_t>(f.index("post_symbol", nsym, "symbol", 1));
    const auto& sym = file.symbol(h.post_symbol);
    if (!sym.in_section() || sym.type != elf::SymbolType::Func || sym.name != h.function ||
        !carries_object_section(file.section(sym.section).name, kPostPrefix))
      f.bad_value("post_symbol", fmt::format("symbol {} is not the new code of function '{}'", h.post_symbol,
                                             h.function));
    m.hooks.push_back(std::move(h));
  });
  each(path, top, "ignored", [&](Fields& f, size_t) {
    Manifest::Ignored i;
    i.name = f.str("name");
    i.object = f.index("object", nobj, "object");
    i.reason = f.str("reason");
    m.ignored.push_back(std::move(i));
  });
}

}  // namespace

std::string_view to_string(UnitStatus s) {
  switch (s) {
    case UnitStatus::Changed: return "changed";
    case UnitStatus::New: return "new";
    case UnitStatus::Removed: return "removed";
  }
  return "?";
}

std::string_view to_string(HookKind k) {
  switch (k) {
    case HookKind::PreApply: return "pre_apply";
    case HookKind::Apply: return "apply";
    case HookKind::PostApply: return "post_apply";
    case HookKind::PreUndo: return "pre_undo";
    case HookKind::Undo: return "undo";
    case HookKind::PostUndo: return "post_undo";
  }
  return "?";
}

const ManifestRunSymbol* Manifest::run_symbol(uint32_t index) const {
  for (const auto& r : run_symbols)
    if (r.index == index) return &r;
  return nullptr;
}

elf::Object load_file(const std::string& path) {
  try {
    return elf::Object::load(path);
  } catch (const Error& e) {
    invalid(path, e.what());
  }
}

std::string verify_digest(const elf::Object& file) {
  size_t at = digest_offset(file);
  const auto& image = file.image();
  std::string stored(reinterpret_cast<const char*>(image.data() + at), kDigestSize);
  std::string computed = digest_of(image, at, kDigestSize);
  if (stored != computed) {
    bool printable = std::all_of(stored.begin(), stored.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
    invalid(file.path(), fmt::format("its contents do not match its digest (stored {}, computed {}): the file is "
                                     "corrupted or was changed after livesplice create wrote it",
                                     printable ? stored : std::string("(not a digest)"), computed));
  }
  return computed;
}

void seal(std::vector<uint8_t>& image, const std::string& name) {
  size_t at = digest_offset(elf::Object::from_memory(image, name));
  std::string d = digest_of(image, at, kDigestSize);
  std::copy(d.begin(), d.end(), image.begin() + static_cast<ptrdiff_t>(at));
}

Manifest parse_manifest(const elf::Object& file) {
  const std::string& path = file.path();
  const elf::Section* sec = file.find_section(kManifestSection);
  if (!sec) invalid(path, fmt::format("it has no {} section", kManifestSection));
  Manifest m;
  m.path = path;
  try {
    m.json = Json::parse(sec->bytes.begin(), sec->bytes.end());
  } catch (const nlohmann::json::exception& e) {
    invalid(path, fmt::format("{}: {}", ls::where(path, kManifestSection), json_reason(e)));
  }
  if (!m.json.is_object()) invalid(path, fmt::format("{} does not say \"format\": \"{}\"", kManifestSection, kFormatName));
  Fields top(path, m.json, "");
  read_header(m, file, top);
  read_lists(m, file, top);
  top.done();
  return m;
}

Manifest read_manifest(const elf::Object& file) {
  std::string digest = verify_digest(file);
  Manifest m = parse_manifest(file);
  m.digest = std::move(digest);
  return m;
}

Manifest read_manifest(const std::string& path) { return read_manifest(load_file(path)); }

}  // namespace ls::update
