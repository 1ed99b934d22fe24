// Each machine's relocation numbers as its psABI defines them, as a table: number →
// name, arch-neutral kind (elf/object.h) and the bytes it patches. The ELF layer reads
// relocations through it once, at load, so nothing above sees a raw number's meaning;
// what a machine's *instructions* around a relocation look like is src/arch's business.
//
// A machine whose table is here can be read; one without (arm64, so far) is refused by
// Object::load. Adding a machine adds one table to relocs.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "elf/object.h"

namespace ls::elf {

struct RelocInfo {
  RelocKind kind;
  unsigned width;   // bytes patched
};

// What a relocation number of `m` computes, for a number a relocatable object may hold.
// nullopt for numbers unknown to the table or only ever found in linked files (COPY,
// GLOB_DAT, RELATIVE, ...).
std::optional<RelocInfo> reloc_info(Machine m, uint32_t type);

// "R_X86_64_PLT32" for a relocation number; "relocation type N" when unknown.
std::string reloc_name(Machine m, uint32_t type);

// What the dynamic loader stores in the slot of a linked file's dynamic relocation:
// the address an IFUNC resolver returns (IRELATIVE), the address of the dynamic symbol
// it names (GLOB_DAT, JUMP_SLOT), or something livesplice does not read.
enum class DynamicSlot { Other, ResolverResult, SymbolAddress };
DynamicSlot dynamic_slot(Machine m, uint32_t type);

// ELF's e_machine for a machine, and back (nullopt: a machine livesplice has no table for).
uint16_t e_machine(Machine m);
std::optional<Machine> machine_of(uint16_t e_machine);

}  // namespace ls::elf
