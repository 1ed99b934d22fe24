// End to end: `livesplice create` on a real project (project/shop, a shared library),
// and the update linked into *this* process, which dlopen()s the library's pre build and
// so is the running program. The resolver answers from what a real apply layer would
// know: the library's symbol tables (statics by source file), dynamic relocations (the
// GD pair of a thread-local) and the dynamic linker. The new code is called through a
// function pointer and must use the program's state: its global, its thread-locals, its
// static function; and its own: a new global, a new string, a new function in another
// object.
#include <dlfcn.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <link.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "loader/link.h"
#include "support.h"
#include "update/contents.h"

namespace fs = std::filesystem;
using ls::TargetAddr;
using ls::View;

namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

uint64_t thread_pointer() {
  uint64_t tp;
  asm("mov %%fs:0, %0" : "=r"(tp));
  return tp;
}

// What the library's own ELF file says: symbols (locals keyed by their source file,
// as the update's manifest names them) and the GOT pairs of general-dynamic TLS.
struct LibraryFile {
  struct Sym {
    uint64_t value = 0;
    bool tls = false;
  };
  std::map<std::pair<std::string, std::string>, Sym> locals;   // (file, name)
  std::map<std::string, Sym> globals;
  std::map<std::string, uint64_t> gd_pair;                      // name -> offset of its DTPMOD64
  // GD pairs of file-local variables (and the LD pair): the DTPMOD64 names no symbol,
  // and the variable's offset is written into the second word at link time.
  std::vector<uint64_t> anonymous_pairs;

  static LibraryFile read(const std::string& path) {
    LibraryFile lf;
    elf_version(EV_CURRENT);
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) throw std::runtime_error("cannot open " + path);
    Elf* e = elf_begin(fd, ELF_C_READ, nullptr);
    std::vector<std::string> dynsym_names;
    for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(e, scn));) {
      GElf_Shdr sh;
      gelf_getshdr(scn, &sh);
      if (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) continue;
      Elf_Data* d = elf_getdata(scn, nullptr);
      std::string file;
      for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; ++i) {
        GElf_Sym s;
        gelf_getsym(d, static_cast<int>(i), &s);
        std::string name = elf_strptr(e, sh.sh_link, s.st_name);
        if (sh.sh_type == SHT_DYNSYM) {
          dynsym_names.push_back(name);
          continue;
        }
        if (GELF_ST_TYPE(s.st_info) == STT_FILE) file = name;
        if (s.st_shndx == SHN_UNDEF || name.empty()) continue;
        Sym y{s.st_value, GELF_ST_TYPE(s.st_info) == STT_TLS};
        if (GELF_ST_BIND(s.st_info) == STB_LOCAL) lf.locals[{file, name}] = y;
        else lf.globals[name] = y;
      }
    }
    for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(e, scn));) {
      GElf_Shdr sh;
      gelf_getshdr(scn, &sh);
      if (sh.sh_type != SHT_RELA) continue;
      Elf_Data* d = elf_getdata(scn, nullptr);
      for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; ++i) {
        GElf_Rela r;
        gelf_getrela(d, static_cast<int>(i), &r);
        auto sym = GELF_R_SYM(r.r_info);
        if (GELF_R_TYPE(r.r_info) != R_X86_64_DTPMOD64) continue;
        if (sym && sym < dynsym_names.size()) lf.gd_pair[dynsym_names[sym]] = r.r_offset;
        else if (!sym) lf.anonymous_pairs.push_back(r.r_offset);
      }
    }
    elf_end(e);
    close(fd);
    return lf;
  }
};

// The library as loaded in this process.
struct Library {
  void* handle = nullptr;
  uint64_t base = 0;          // l_addr
  uint64_t tls_block = 0;     // this thread's block of the library's TLS
  LibraryFile file;

  template <typename T>
  T fn(const char* name) const {
    void* p = dlsym(handle, name);
    if (!p) throw std::runtime_error(std::string("dlsym ") + name);
    return reinterpret_cast<T>(p);
  }
  int* tls_var(const std::string& source, const std::string& name) const {
    return reinterpret_cast<int*>(tls_block + file.locals.at({source, name}).value);
  }
};

// Run symbols -> this process, the way an apply layer would answer from run-pre
// matching and symbol tables. `refuse` holds (name, view) pairs it pretends not to know.
class ProcessResolver : public ls::load::SymbolResolver {
 public:
  ProcessResolver(const Library& lib, const nlohmann::ordered_json& manifest) : lib_(lib) {
    for (const auto& r : manifest["run_symbols"])
      symbols_[r["index"].get<uint32_t>()] = {r["name"], r["local"].get<bool>(), r.value("source", "")};
  }
  std::set<std::pair<std::string, View>> refuse;
  mutable std::set<std::string> asked;
  mutable std::vector<uint64_t> addresses;   // every Address answered

  ls::Result<TargetAddr> resolve(uint32_t index, View view) const override {
    auto it = symbols_.find(index);
    if (it == symbols_.end()) return ls::error("symbol {} is not a run symbol", index);
    const Entry& s = it->second;
    asked.insert(s.name);
    if (refuse.count({s.name, view})) return ls::error("refused by the test");
    const LibraryFile::Sym* y = nullptr;
    if (s.local) {
      auto f = lib_.file.locals.find({fs::path(s.source).filename().string(), s.name});
      if (f != lib_.file.locals.end()) y = &f->second;
    } else if (auto g = lib_.file.globals.find(s.name); g != lib_.file.globals.end()) {
      y = &g->second;
    }
    switch (view) {
      case View::Address: {
        uint64_t a = 0;
        if (y && !y->tls) a = lib_.base + y->value;
        else if (!s.local) {
          void* p = dlsym(lib_.handle, s.name.c_str());
          if (!p) p = dlsym(RTLD_DEFAULT, s.name.c_str());
          a = reinterpret_cast<uint64_t>(p);
        }
        if (!a) return ls::error("'{}' is not in this process", s.name);
        addresses.push_back(a);
        return TargetAddr(a);
      }
      case View::TlsOffset:
        // Offsets from this thread's pointer: the library is dlopen()ed, so its TLS is
        // dynamic and the answer holds for this thread only — the one the test runs on.
        if (!y || !y->tls) return ls::error("'{}' is not thread-local", s.name);
        return TargetAddr(lib_.tls_block + y->value - thread_pointer());
      case View::TlsGdPair: {
        if (auto p = lib_.file.gd_pair.find(s.name); p != lib_.file.gd_pair.end()) return TargetAddr(lib_.base + p->second);
        if (y && y->tls && s.local)
          for (uint64_t off : lib_.file.anonymous_pairs)   // read the pair's offset word in this process
            if (*reinterpret_cast<const uint64_t*>(lib_.base + off + 8) == y->value) return TargetAddr(lib_.base + off);
        return ls::error("no GD pair for '{}'", s.name);
      }
      default: return ls::error("{} not known", ls::to_string(view));
    }
  }

 private:
  struct Entry {
    std::string name;
    bool local = false;
    std::string source;
  };
  const Library& lib_;
  std::map<uint32_t, Entry> symbols_;
};

// Captures what the process writes on stdout while `f` runs.
template <typename F>
std::string capture_stdout(const std::string& file, F f) {
  fflush(stdout);
  int saved = dup(1);
  int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  dup2(fd, 1);
  close(fd);
  f();
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  return lstest::read_file(file);
}

// The project built one way: its tree, an update per patch, and the pre library
// loaded twice (with static and with dynamic TLS).
struct Build {
  std::unique_ptr<lstest::TempDir> tmp;
  Library* lib = nullptr;       // static TLS (DF_STATIC_TLS); stays loaded
  Library* dyn_lib = nullptr;   // dynamic TLS; stays loaded
  std::string error;            // setup failure: every test of this build fails with it
};

Library* load_library(const std::string& path) {
  auto* lib = new Library;
  lib->handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib->handle) throw std::runtime_error(std::string("dlopen: ") + dlerror());
  link_map* lm = nullptr;
  dlinfo(lib->handle, RTLD_DI_LINKMAP, &lm);
  lib->base = lm->l_addr;
  lib->file = LibraryFile::read(path);
  // This thread's block of the library's TLS, from a global thread-local's address
  // (dlsym answers for the calling thread) and its offset in the block.
  // RTLD_DI_TLS_DATA would be simpler but answers NULL for DF_STATIC_TLS libraries.
  lib->tls_block = reinterpret_cast<uint64_t>(lib->fn<int*>("calls")) - lib->file.globals.at("calls").value;
  return lib;
}

void build(Build& b, const std::string& cflags) {
  b.tmp = std::make_unique<lstest::TempDir>();
  std::string src = *b.tmp / "src";
  std::map<std::string, std::string> env{{"CFLAGS", cflags}};
  fs::copy(std::string(LOADER_PROJECT_DIR) + "/shop", src, fs::copy_options::recursive);
  auto make = lstest::run({"make", "-s"}, src, env);
  if (make.status != 0) throw std::runtime_error("make failed:\n" + make.output());
  for (std::string patch : {"fix", "static"}) {
    auto c = lstest::run({lstest::livesplice(), "create", "--source", src, "--patch",
                          std::string(LOADER_PROJECT_DIR) + "/" + patch + ".patch", "-o", *b.tmp / (patch + ".lsu")},
                         "", env);
    if (c.status != 0) throw std::runtime_error("livesplice create " + patch + " failed:\n" + c.output());
  }
  b.lib = load_library(src + "/libshop.so");
  // The same pre objects without c.o: a library whose thread-locals are dynamic.
  auto dyn = lstest::run({"cc", "-shared", "-o", "libshop-dyn.so", "a.o", "b.o"}, src);
  if (dyn.status != 0) throw std::runtime_error("linking libshop-dyn.so failed:\n" + dyn.output());
  b.dyn_lib = load_library(src + "/libshop-dyn.so");
}

struct Flags {
  const char* name;
  const char* cflags;
};

// Every test runs on the project built with each of these (make and create both take
// CFLAGS from the environment).
const Flags kFlags[] = {
    {"O2", "-g -O2"},
    {"O0", "-g -O0"},
    {"O3", "-g -O3"},
    // Debian's hardening flags, and calls through the GOT instead of the PLT.
    {"Hardened", "-g -O2 -fstack-protector-strong -fcf-protection -D_FORTIFY_SOURCE=2 -fno-plt"},
};

class Live : public ::testing::TestWithParam<Flags> {
 public:
  struct Update {
    ls::update::Contents contents;
    nlohmann::ordered_json manifest;
    uint32_t symbol(const std::string& function) const {
      for (const auto& f : manifest["functions"])
        if (f["name"] == function) return f["post_symbol"].get<uint32_t>();
      throw std::runtime_error("no function " + function + " in the update");
    }
    uint32_t data_symbol(const std::string& name) const {
      for (const auto& d : manifest["data"])
        if (d["name"] == name) return d["post_symbol"].get<uint32_t>();
      throw std::runtime_error("no data " + name + " in the update");
    }
    size_t count(ls::elf::RelocKind kind) const {
      size_t n = 0;
      for (uint32_t sec : contents.post_sections)
        for (const auto& r : contents.file.section(sec).relocs) n += r.kind == kind;
      return n;
    }
  };

 protected:
  // Builds once per flag set; fails the test (never skips it) when that build failed.
  void SetUp() override {
    static std::map<std::string, Build> builds;
    auto [it, fresh] = builds.try_emplace(GetParam().name);
    Build& b = it->second;
    if (fresh) {
      try {
        build(b, GetParam().cflags);
      } catch (const std::exception& e) {
        b.error = e.what();
      }
    }
    ASSERT_EQ(b.error, "") << "setting up the project with CFLAGS=" << GetParam().cflags << " failed";
    tmp_ = b.tmp.get();
    lib_ = b.lib;
    dyn_lib_ = b.dyn_lib;
  }

  Update update(const std::string& name) const {
    std::string path = *tmp_ / (name + ".lsu");
    auto c = ls::update::Contents::load(path);
    auto manifest = c.manifest.json;
    return {std::move(c), manifest};
  }

  // Memory near the library (below it, walking down) or far from everything.
  std::unique_ptr<lstest::Mapping> map(bool far, uint64_t size, const Library* near = nullptr) const {
    if (far) return std::make_unique<lstest::Mapping>(0x1000'0000'0000, static_cast<int64_t>(kGiB), size);
    return std::make_unique<lstest::Mapping>((near ? near : lib_)->base - 32 * (1 << 20), -(1 << 20), size);
  }

  // Reserved stubs (or GOT slots) minus those of __tls_get_addr, whose calls the TLS
  // rewrites remove.
  template <typename Key>
  static size_t reserved_without_tls_get_addr(const Update& u, const std::vector<Key>& keys) {
    size_t n = 0;
    for (const auto& k : keys) n += u.contents.file.symbol(k.symbol).name != "__tls_get_addr";
    return n;
  }

  ls::Context ctx;
  lstest::TempDir* tmp_ = nullptr;
  Library* lib_ = nullptr;
  Library* dyn_lib_ = nullptr;
};

// Links fix.lsu, installs it and calls the new compute() twice, checking every effect.
void link_and_run_fix(ls::Context& ctx, const Live::Update& u, const Library& lib, ProcessResolver& resolver,
                      lstest::Mapping& m, const std::string& scratch, ls::load::Image& img) {
  auto plan = ls::load::plan(ctx, u.contents, u.contents.post_sections);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  auto linked = ls::load::link(ctx, u.contents, *plan, TargetAddr(m.address()), resolver);
  ASSERT_TRUE(linked.ok()) << linked.status().message();
  img = std::move(linked.value());
  ASSERT_LE(img.bytes.size(), plan->size);
  m.install(img);

  TargetAddr compute = img.symbol_at.at(u.symbol("compute"));
  TargetAddr hits = img.symbol_at.at(u.data_symbol("compute_hits"));
  EXPECT_TRUE(img.code.contains(compute));
  EXPECT_TRUE(img.code.contains(img.symbol_at.at(u.symbol("helper"))));
  EXPECT_TRUE(img.writable.contains(hits));
  EXPECT_FALSE(resolver.asked.count("helper")) << "a new function binds to the update's own copy";

  auto fn = reinterpret_cast<int (*)(int)>(compute.value());
  auto* total = lib.fn<int*>("total");
  auto get_calls = lib.fn<int (*)()>("get_calls");
  int* depth = lib.tls_var("a.c", "depth");
  int* peak = lib.tls_var("a.c", "peak");
  auto* new_hits = reinterpret_cast<int*>(hits.value());

  int calls0 = get_calls(), depth0 = *depth;
  *peak = depth0;
  *total = 5;
  int r1 = 0, r2 = 0;
  std::string out = capture_stdout(scratch, [&] {
    r1 = fn(7);
    *total = 50;   // the program's global, read through the image's GOT slot
    r2 = fn(8);
  });
  EXPECT_EQ(out, "patched compute: compute(7)\npatched compute: compute(8)\n");
  // scale(x) + total + helper(x) + strlen(buf) + snprintf's count + peak
  EXPECT_EQ(r1, 21 + 5 + 1007 + 10 + 10 + (depth0 + 1));
  EXPECT_EQ(r2, 24 + 50 + 1008 + 10 + 10 + (depth0 + 2));
  EXPECT_EQ(get_calls(), calls0 + 2) << "the program's own code sees the thread-local the new code changed";
  EXPECT_EQ(*depth, depth0 + 2);
  EXPECT_EQ(*new_hits, 2);
  *total = 5;
}

TEST_P(Live, LinkedNearTheLibraryItRunsOnTheProgramsStateWithoutStubs) {
  Update u = update("fix");
  ProcessResolver resolver(*lib_, u.manifest);
  auto plan = ls::load::plan(ctx, u.contents, u.contents.post_sections);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  auto m = map(false, plan->size);
  ASSERT_TRUE(m->ok()) << "no free address range below the library";
  ls::load::Image img;
  link_and_run_fix(ctx, u, *lib_, resolver, *m, *tmp_ / "near.out", img);
  if (HasFatalFailure()) return;
  // The library's TLS is static: both the general-dynamic access (calls) and the
  // local-dynamic ones (depth, peak) became local-exec.
  EXPECT_FALSE(resolver.asked.count("__tls_get_addr"));
  bool all_near = true;
  for (uint64_t a : resolver.addresses)
    all_near &= std::max(a, m->address()) - std::min(a, m->address()) < kGiB;
  if (all_near) {
    EXPECT_EQ(img.stubs_used, 0u);
  }
  auto plan_again = ls::load::plan(ctx, u.contents, u.contents.post_sections);
  EXPECT_EQ(img.got_used, reserved_without_tls_get_addr(u, plan_again->got));   // total, compute_hits, ...
}

TEST_P(Live, LinkedFarFromEverythingItGoesThroughStubsAndLocalExecTls) {
  Update u = update("fix");
  ProcessResolver resolver(*lib_, u.manifest);
  auto plan = ls::load::plan(ctx, u.contents, u.contents.post_sections);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  auto m = map(true, plan->size);
  ASSERT_TRUE(m->ok()) << "no free address range far away";
  ls::load::Image img;
  link_and_run_fix(ctx, u, *lib_, resolver, *m, *tmp_ / "far.out", img);
  if (HasFatalFailure()) return;
  // Every far callee (scale, and printf, snprintf, strlen unless called through the GOT)
  // has its stub. helper is in the image, and the TLS sequences were rewritten so
  // __tls_get_addr is never called.
  EXPECT_GE(img.stubs_used, 1u);
  EXPECT_EQ(img.stubs_used, reserved_without_tls_get_addr(u, plan->stubs));
  EXPECT_FALSE(resolver.asked.count("__tls_get_addr"));
}

TEST_P(Live, StaticDataIsReachableOnlyFromNearby) {
  Update u = update("static");
  ProcessResolver resolver(*lib_, u.manifest);
  auto plan = ls::load::plan(ctx, u.contents, u.contents.post_sections);
  ASSERT_TRUE(plan.ok()) << plan.status().message();

  auto far = map(true, plan->size);
  ASSERT_TRUE(far->ok());
  auto bad = ls::load::link(ctx, u.contents, *plan, TargetAddr(far->address()), resolver);
  ASSERT_FALSE(bad.ok());
  std::string e = bad.status().message();
  EXPECT_NE(e.find("pcrel32 against 'counter'"), std::string::npos) << e;
  EXPECT_NE(e.find("beyond ±2 GiB"), std::string::npos) << e;
  EXPECT_NE(e.find(".livesplice.post.text.compute)+0x"), std::string::npos) << e;
  EXPECT_EQ(e.find("'scale'"), std::string::npos) << "calls go through stubs: " << e;

  auto near = map(false, plan->size);
  ASSERT_TRUE(near->ok());
  auto img = ls::load::link(ctx, u.contents, *plan, TargetAddr(near->address()), resolver);
  ASSERT_TRUE(img.ok()) << img.status().message();
  near->install(*img);
  auto fn = reinterpret_cast<int (*)(int)>(img->symbol_at.at(u.symbol("compute")).value());
  auto bump = lib_->fn<int (*)()>("bump");
  *lib_->fn<int*>("total") = 5;
  int before = bump();   // counter after bump
  EXPECT_EQ(fn(1), 3 + 5 + before);
  EXPECT_EQ(bump(), before + 2) << "the new code incremented the program's static counter";
}

TEST_P(Live, UnresolvedRunSymbolsAreNamedWithTheirSourceFile) {
  Update u = update("fix");
  ProcessResolver resolver(*lib_, u.manifest);
  resolver.refuse.insert({"scale", View::Address});
  resolver.refuse.insert({"peak", View::TlsOffset});
  resolver.refuse.insert({"peak", View::TlsGdPair});
  auto plan = ls::load::plan(ctx, u.contents, u.contents.post_sections);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  auto m = map(false, plan->size);
  ASSERT_TRUE(m->ok());
  auto img = ls::load::link(ctx, u.contents, *plan, TargetAddr(m->address()), resolver);
  ASSERT_FALSE(img.ok());
  std::string e = img.status().message();
  EXPECT_NE(e.find("undefined run symbol 'scale' (file-local symbol in a.c, object a.o): the resolver knows no "
                   "address for it; needed at "),
            std::string::npos) << e;
  EXPECT_NE(e.find("refused by the test"), std::string::npos) << e;
  EXPECT_NE(e.find("undefined run symbol 'peak' (file-local symbol in a.c, object a.o): the resolver knows no TLS "
                   "offset"),
            std::string::npos) << e;
  EXPECT_NE(e.find("fix.lsu:(.livesplice.post.text.compute)+0x"), std::string::npos) << e;
}

TEST_P(Live, DynamicTlsIsReachedThroughTheGdPairButNotFromLocalDynamicCode) {
  Update fix = update("fix");
  ProcessResolver r1(*dyn_lib_, fix.manifest);
  auto p1 = ls::load::plan(ctx, fix.contents, fix.contents.post_sections);
  ASSERT_TRUE(p1.ok()) << p1.status().message();
  auto m1 = map(false, p1->size, dyn_lib_);
  ASSERT_TRUE(m1->ok());
  if (fix.count(ls::elf::RelocKind::TlsLd) > 0) {
    // depth and peak are reached with local-dynamic code, which can only become
    // local-exec: refused, naming them. calls (general dynamic) falls back to the
    // library's GD pair without complaint.
    auto bad = ls::load::link(ctx, fix.contents, *p1, TargetAddr(m1->address()), r1);
    ASSERT_FALSE(bad.ok());
    std::string e = bad.status().message();
    EXPECT_NE(e.find("dtpoff32 against 'depth': TLS offset -0x"), std::string::npos) << e;
    EXPECT_NE(e.find("'depth' is not in static TLS"), std::string::npos) << e;
    EXPECT_NE(e.find("dtpoff32 against 'peak'"), std::string::npos) << e;
    EXPECT_EQ(e.find("'calls'"), std::string::npos) << e;
  } else {
    // Unoptimised code reaches every thread-local through its own GD pair.
    ls::load::Image img;
    link_and_run_fix(ctx, fix, *dyn_lib_, r1, *m1, *tmp_ / "dyn.out", img);
    if (HasFatalFailure()) return;
  }

  // static.lsu only has the general-dynamic access: it links through the pair and runs.
  Update u = update("static");
  ProcessResolver resolver(*dyn_lib_, u.manifest);
  auto plan = ls::load::plan(ctx, u.contents, u.contents.post_sections);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  auto m = map(false, plan->size, dyn_lib_);
  ASSERT_TRUE(m->ok());
  auto img = ls::load::link(ctx, u.contents, *plan, TargetAddr(m->address()), resolver);
  ASSERT_TRUE(img.ok()) << img.status().message();
  EXPECT_TRUE(resolver.asked.count("__tls_get_addr")) << "the GD sequence still calls it";
  m->install(*img);
  auto fn = reinterpret_cast<int (*)(int)>(img->symbol_at.at(u.symbol("compute")).value());
  auto get_calls = dyn_lib_->fn<int (*)()>("get_calls");
  auto bump = dyn_lib_->fn<int (*)()>("bump");
  *dyn_lib_->fn<int*>("total") = 9;
  int calls0 = get_calls(), counter0 = bump();
  EXPECT_EQ(fn(2), 6 + 9 + counter0);
  EXPECT_EQ(get_calls(), calls0 + 1);
  EXPECT_EQ(bump(), counter0 + 2);
}

INSTANTIATE_TEST_SUITE_P(Flags, Live, ::testing::ValuesIn(kFlags),
                         [](const ::testing::TestParamInfo<Flags>& i) { return std::string(i.param.name); });

}  // namespace
