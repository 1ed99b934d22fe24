// The new code of a kernel update as a real kernel module: written at apply time, once
// run-pre matching and kallsyms have said what every run symbol is, and loaded with
// init_module. The kernel's own module loader then does what a module needs: it
// relocates the code, applies alternatives, return and retpoline sites, paravirt and
// static call sites, turns fentry calls into NOPs (__mcount_loc), registers the
// exception table (sorted), jump labels, ORC and the bug table, makes the text
// read-only and executable, and lists the new functions in kallsyms under the module's
// name, so backtraces name it.
//
// What is hard, in the order build_module meets it:
// - What a linker would refuse. The sections must be loadable and the update's own
//   undefined globals bound to its definitions, as the process loader checks and binds
//   them (load::check); the layout and the relocation are the kernel's.
// - The module's identity is not ours to invent: vermagic, the layout of struct module
//   (`.gnu.linkonce.this_module`) and the CRC of module_layout (`__versions`) come from
//   the skeleton module `create --kernel` built against the kernel's headers package and
//   stored in the update (`.livesplice.kernel_module`); only its name is rewritten.
// - One table per name: the loader finds `__ex_table`, `.orc_unwind_ip`... by name and
//   takes the first, so the update's per-object copies of a section are merged into one,
//   in file order (ORC's two parallel tables stay parallel), relocations moved along.
// - Binding without exports. A module's undefined symbols must be exported, but the
//   new code calls static and non-exported functions. Named definitions keep their
//   names; every run symbol becomes an SHN_ABS symbol holding the address the resolver
//   gave; the loader relocates against absolute symbols as it does against its own, and
//   kallsyms leaves them out.
// - The kernel's module loader applies a few relocation types only (the machine's
//   arch::Target::kernel_module_reloc_width; on x86-64 R_X86_64_{NONE,64,32,32S,PC32,
//   PLT32,PC64}), and refuses a field that is not zero before it writes (RELA: the
//   addend is in the relocation); other types are refused here with the place named.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/diag.h"
#include "base/result.h"
#include "loader/link.h"
#include "update/contents.h"

namespace ls::kernel {


struct ModuleFile {
  std::string name;                 // livesplice_<id prefix>
  std::vector<uint8_t> bytes;       // the .ko
  // Where each loaded update section went: its section name in the module, and its
  // offset there (sections of one name are merged).
  std::map<uint32_t, std::pair<std::string, uint64_t>> placed;
};

// The module name for an update id.
std::string module_name(const std::string& id);

// Writes the module for `u`: its post sections and carried kernel tables (every table
// the differ carries, under its own name), run symbols as absolute symbols from
// `resolver`. Every failure (an unresolved symbol, a relocation type the kernel does not
// take) is reported at once.
Result<ModuleFile> build_module(Context& ctx, const update::Contents& u, const load::SymbolResolver& resolver,
                                const std::string& name);

// The module loaded (init_module) and, unless kept, unloaded again when this goes out of
// scope: an apply that fails after loading leaves nothing behind.
class LoadedModule {
 public:
  static Result<LoadedModule> load(const ModuleFile& m);
  LoadedModule(LoadedModule&& o) noexcept : name_(std::move(o.name_)), keep_(o.keep_) { o.name_.clear(); }
  LoadedModule& operator=(LoadedModule&&) = delete;
  ~LoadedModule();
  void keep() { keep_ = true; }
  // A section's address, from /sys/module/NAME/sections.
  Result<TargetAddr> section(const std::string& section) const;

 private:
  explicit LoadedModule(std::string name) : name_(std::move(name)) {}
  std::string name_;
  bool keep_ = false;
};

// delete_module(name), not waiting: the module is in use only if something still
// refers to it.
Status unload_module(const std::string& name);

}  // namespace ls::kernel
