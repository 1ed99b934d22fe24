// libFuzzer target for the update reader: any bytes must either be refused with
// ls::Error or give a Manifest (and Contents) that keeps the reader's promises to apply
// (every index in range, every entry typed). A crash, a sanitizer report, any other
// exception (nlohmann's included: no JSON error may escape the schema) or a broken
// promise is a finding.
//
// The digest stops nearly every mutation at the door, which is right for apply but
// would leave the schema unfuzzed: so each input is tried twice, as it is (the digest
// check must refuse it cleanly) and re-sealed (as a hostile writer would make it), which
// takes it through the schema.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "base/diag.h"
#include "update/contents.h"
#include "update/manifest.h"

namespace {

[[noreturn]] void broken_promise(const char* what) {
  std::fprintf(stderr, "update_reader_fuzzer: accepted update breaks the reader's contract: %s\n", what);
  std::abort();
}

// manifest.h: indices are in range, so readers index without checking.
void check(const ls::elf::Object& file, const ls::update::Manifest& m) {
  size_t nsec = file.sections().size(), nsym = file.symbols().size();
  auto section = [&](uint32_t i) { return i < nsec; };
  auto symbol = [&](uint32_t i) { return i < nsym; };
  for (const auto& o : m.objects)
    for (size_t t : o.targets)
      if (t >= m.targets.size()) broken_promise("object target out of range");
  for (const auto& f : m.functions) {
    if (f.object >= m.objects.size()) broken_promise("function object out of range");
    if (!section(f.pre_section) || !section(f.post_section)) broken_promise("function section out of range");
    if (!symbol(f.pre_symbol) || !symbol(f.post_symbol)) broken_promise("function symbol out of range");
    if (f.replace && (f.pre_section == 0 || f.post_symbol == 0)) broken_promise("replaced function without code");
  }
  for (const auto& d : m.data)
    if (d.object >= m.objects.size() || !section(d.post_section) || !symbol(d.post_symbol))
      broken_promise("datum index out of range");
  for (const auto& s : m.sections)
    if (s.index == 0 || !section(s.index) || s.object >= m.objects.size() || file.section(s.index).name != s.name)
      broken_promise("section entry does not match the file");
  for (const auto& r : m.run_symbols)
    if (r.index == 0 || !symbol(r.index) || (r.object && *r.object >= m.objects.size()) ||
        file.symbol(r.index).defined())
      broken_promise("run symbol entry does not match the file");
  if (m.kernel_module_section >= nsec) broken_promise("kernel module section out of range");
}

void read(const ls::elf::Object& file) {
  ls::update::Contents c = ls::update::Contents::from(file);   // read_manifest, then the records
  check(c.file, c.manifest);
  for (const auto& f : c.functions) (void)f.label();
  for (const auto& r : c.run_symbols) (void)c.run_symbol(r.index);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  try {
    read(ls::elf::Object::from_memory(bytes, "fuzz.lsu"));
  } catch (const ls::Error&) {
    // Refusing a corrupted file is the expected outcome.
  }
  try {
    ls::update::seal(bytes, "fuzz.lsu");
    read(ls::elf::Object::from_memory(bytes, "fuzz.lsu"));
  } catch (const ls::Error&) {
  }
  return 0;
}
