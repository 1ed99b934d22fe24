// Equality of a pre unit and a post unit: bytes outside relocation fields, plus every
// relocation compared by what it points at rather than by the bits it will produce.
//
// What is hard: a reference's "what" hides in three places. A named symbol says it
// directly. A section symbol or an assembler label (`.LC0`) says section + addend, and
// for PC-relative fields the assembler has folded the distance to the end of the
// instruction into the addend (-4 for `lea`, -5 for `cmpb $0,x(%rip)`), so the operand
// fields of the instruction are decoded to recover the real target. And literal pools
// (SHF_MERGE) are compared by content: `"hello"` is the same string wherever it moved.
#include <fmt/format.h>

#include <algorithm>


#include "differ/units.h"

namespace ls::diff {

namespace {

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '"' || c == '\\') { out += '\\'; out += c; }
    else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    else out += c;
  }
  return out;
}

int64_t pc_bias(const Units& side, const elf::Section& sec, const elf::Reloc& r) {
  if (!elf::is_pc_relative(r.kind)) return 0;
  if (!sec.exec()) return 0;   // data (jump tables): the addend is the whole story
  const auto& fields = side.operand_fields(sec.index);
  auto it = std::lower_bound(fields.begin(), fields.end(), r.offset,
                             [](const arch::OperandField& f, uint64_t off) { return f.offset < off; });
  if (it != fields.end() && it->offset == r.offset) return it->bias;
  return static_cast<int64_t>(r.width);
}

std::string offset_text(int64_t off) {
  if (off == 0) return "";
  return off > 0 ? fmt::format("+{:#x}", off) : fmt::format("-{:#x}", -off);
}

std::string describe_code(const Units& side, const Unit& u, uint64_t rel) {
  const auto& sec = side.obj().section(u.section);
  if (!sec.exec() || sec.nobits()) return {};
  std::span<const uint8_t> code(sec.bytes.data() + u.start, u.size);
  auto insn = side.target().instruction_at(code, rel);
  return insn ? "'" + insn->text + "'" : std::string();
}

}  // namespace

Reference reference(const Units& side, const elf::Section& sec, const elf::Reloc& r) {
  using To = Reference::To;
  const auto& obj = side.obj();
  const auto& sym = obj.symbol(r.symbol);
  Reference ref;
  // A call through the PLT and a direct PC-relative call compute the same thing once
  // linked (a global made static changes one into the other).
  ref.kind = r.kind == elf::RelocKind::Plt32 ? elf::RelocKind::PcRel32 : r.kind;
  if (!sym.defined()) {
    ref.to = To::External;
    ref.text = sym.name;
    ref.offset = r.addend;
    return ref;
  }
  if (!sym.in_section()) {
    ref.to = To::Absolute;
    ref.text = sym.name;
    ref.offset = static_cast<int64_t>(sym.value) + r.addend;
    return ref;
  }
  int64_t eff = static_cast<int64_t>(sym.value) + r.addend + pc_bias(side, sec, r);
  int unit = side.unit_of_symbol(r.symbol);
  const auto& target = obj.section(sym.section);
  if (unit < 0 && target.merge_strings() && eff >= 0 && static_cast<uint64_t>(eff) < target.bytes.size()) {
    ref.to = To::String;
    ref.text = target.view(obj.path()).cstring(eff);
    return ref;
  }
  if (unit < 0 && target.merge_constants() && target.entsize > 0 && eff >= 0 &&
      static_cast<uint64_t>(eff) + target.entsize <= target.bytes.size()) {
    ref.to = To::Constant;
    ref.text = std::string_view(reinterpret_cast<const char*>(target.bytes.data()) + eff, target.entsize);
    return ref;
  }
  if (unit < 0 && eff >= 0) unit = side.unit_at(sym.section, eff);
  if (unit >= 0) {
    ref.to = To::Unit;
    ref.id = side[unit].pair_id;
    ref.offset = eff - static_cast<int64_t>(side[unit].start);
    return ref;
  }
  ref.to = To::Section;
  ref.text = target.name;
  ref.offset = eff;
  return ref;
}

std::string describe(const Units& side, const Reference& ref) {
  using To = Reference::To;
  switch (ref.to) {
    case To::External:
    case To::Absolute: return fmt::format("{}{}", ref.text, offset_text(ref.offset));
    case To::String: return fmt::format("\"{}\"", escape(ref.text));
    case To::Constant: {
      std::string hex;
      for (char c : ref.text) hex += fmt::format("{:02x}", static_cast<unsigned char>(c));
      return "constant 0x" + hex;
    }
    case To::Section: return fmt::format("{}{}", ref.text, offset_text(ref.offset));
    case To::Unit:
      for (const auto& u : side.all())
        if (u.pair_id == ref.id) return u.name + offset_text(ref.offset);
      return "?";
  }
  return "?";
}

std::optional<std::string> compare_units(const Units& pre, const Unit& a, const Units& post, const Unit& b) {
  const auto& sa = pre.obj().section(a.section);
  const auto& sb = post.obj().section(b.section);
  std::string size_note;
  if (a.size != b.size) size_note = fmt::format("size {:#x} -> {:#x}", a.size, b.size);
  if (a.nobits || b.nobits) {
    if (a.nobits != b.nobits) return std::string("moved between zero-initialised and initialised data");
    if (!size_note.empty()) return size_note;
    return std::nullopt;
  }

  // The first relocation that differs, by position or by target.
  std::optional<uint64_t> reloc_at;
  std::string reloc_why;
  size_t n = std::min(a.relocs.size(), b.relocs.size());
  for (size_t k = 0; k < n && !reloc_at; ++k) {
    const auto& ra = sa.relocs[a.relocs[k]];
    const auto& rb = sb.relocs[b.relocs[k]];
    uint64_t oa = ra.offset - a.start, ob = rb.offset - b.start;
    if (oa != ob || ra.width != rb.width) {
      reloc_at = std::min(oa, ob);
      reloc_why = "a reference moved";
      continue;
    }
    Reference ka = reference(pre, sa, ra), kb = reference(post, sb, rb);
    if (!(ka == kb)) {
      reloc_at = oa;
      reloc_why = fmt::format("now refers to {} (was {})", describe(post, kb), describe(pre, ka));
    }
  }
  if (!reloc_at && a.relocs.size() != b.relocs.size()) {
    reloc_at = n < a.relocs.size() ? sa.relocs[a.relocs[n]].offset - a.start : sb.relocs[b.relocs[n]].offset - b.start;
    reloc_why = fmt::format("{} references -> {}", a.relocs.size(), b.relocs.size());
  }

  // The first byte that differs outside relocation fields.
  std::vector<bool> masked(std::max(a.size, b.size), false);
  for (size_t ri : a.relocs) {
    const auto& r = sa.relocs[ri];
    for (unsigned w = 0; w < r.width; ++w) if (r.offset - a.start + w < masked.size()) masked[r.offset - a.start + w] = true;
  }
  for (size_t ri : b.relocs) {
    const auto& r = sb.relocs[ri];
    for (unsigned w = 0; w < r.width; ++w) if (r.offset - b.start + w < masked.size()) masked[r.offset - b.start + w] = true;
  }
  std::optional<uint64_t> byte_at;
  uint64_t common = std::min(a.size, b.size);
  for (uint64_t k = 0; k < common; ++k) {
    if (masked[k]) continue;
    if (sa.bytes[a.start + k] != sb.bytes[b.start + k]) { byte_at = k; break; }
  }
  if (!byte_at && a.size != b.size) byte_at = common;

  if (!byte_at && !reloc_at) return std::nullopt;
  std::string why;
  if (byte_at && (!reloc_at || *byte_at <= *reloc_at)) {
    std::string was = describe_code(pre, a, *byte_at), now = describe_code(post, b, *byte_at);
    if (!was.empty() && !now.empty() && was != now) why = fmt::format("code differs at +{:#x}: {} -> {}", *byte_at, was, now);
    else why = fmt::format("{} differ at +{:#x}", sa.exec() ? "code bytes" : "contents", *byte_at);
  } else {
    why = fmt::format("+{:#x}: {}", *reloc_at, reloc_why);
  }
  if (!size_note.empty()) why += " (" + size_note + ")";
  return why;
}

}  // namespace ls::diff
