// The carried `.eh_frame` and what it needs (see eh_frame.h for what is hard).
//
// A record of `.eh_frame` is: a 4-byte length (0 ends the table, 0xffffffff announces
// a 64-bit length, which gas never writes for an object), a 4-byte id (0 for a CIE;
// for an FDE the distance from this field back to its CIE), then the body. An FDE's
// start address is the PC-relative field right after the id, relocated against the
// code it describes; its LSDA pointer, when the CIE's augmentation has one, is another
// relocated field further on. Relocations alone say which code and which LSDA an FDE
// belongs to, so no augmentation needs decoding.
#include "update/eh_frame.h"

#include <algorithm>
#include <map>
#include <optional>

#include "base/bytes.h"
#include "base/diag.h"

namespace ls::update::eh {
namespace {

struct Record {
  uint64_t offset = 0;   // in the section
  uint64_t size = 0;     // with its length field
  bool cie = false;
  uint64_t cie_offset = 0;   // an FDE's CIE
};

uint32_t le32(const elf::Section& s, uint64_t at) {
  return static_cast<uint32_t>(s.bytes[at]) | static_cast<uint32_t>(s.bytes[at + 1]) << 8 |
         static_cast<uint32_t>(s.bytes[at + 2]) << 16 | static_cast<uint32_t>(s.bytes[at + 3]) << 24;
}

const elf::Section* eh_frame_of(const elf::Object& obj) {
  for (const auto& s : obj.sections())
    if (s.name == ".eh_frame" && !s.nobits()) return &s;
  return nullptr;
}

std::vector<Record> records(const elf::Object& obj, const elf::Section& s) {
  std::vector<Record> out;
  for (uint64_t at = 0; at + 4 <= s.bytes.size();) {
    uint32_t len = le32(s, at);
    if (len == 0) break;
    if (len == 0xffffffff) fail("{}: a 64-bit record length; not supported", obj.where(s, static_cast<int64_t>(at)));
    if (len < 4 || at + 4 + len > s.bytes.size())
      fail("{}: a record of {} bytes runs past the section's end", obj.where(s, static_cast<int64_t>(at)), len);
    Record r{at, 4 + uint64_t{len}, le32(s, at + 4) == 0, 0};
    if (!r.cie) {
      uint32_t back = le32(s, at + 4);
      if (back > at + 4) fail("{}: the FDE's CIE pointer leads before the section", obj.where(s, static_cast<int64_t>(at)));
      r.cie_offset = at + 4 - back;
    }
    out.push_back(r);
    at += r.size;
  }
  return out;
}

// The section an FDE describes: the target of its start address's relocation.
std::optional<uint32_t> described(const elf::Object& obj, const elf::Section& s, const Record& fde) {
  for (const auto& r : s.relocs)
    if (r.offset == fde.offset + 8 && r.symbol != 0 && obj.symbol(r.symbol).in_section())
      return obj.symbol(r.symbol).section;
  return std::nullopt;
}

bool is_lsda(const elf::Section& s) { return s.name.starts_with(".gcc_except_table"); }
bool is_dw_ref(const elf::Object& obj, const elf::Reloc& r) {
  return r.symbol != 0 && obj.symbol(r.symbol).in_section() && obj.symbol(r.symbol).name.starts_with("DW.ref.");
}

// Each kept record (CIEs those FDEs name, then the FDEs), in section order.
std::vector<Record> kept(const elf::Object& obj, const elf::Section& s, const std::set<uint32_t>& carried) {
  std::vector<Record> all = records(obj, s);
  std::set<uint64_t> cies;
  std::vector<Record> fdes;
  for (const auto& r : all)
    if (!r.cie)
      if (auto sec = described(obj, s, r); sec && carried.count(*sec)) {
        fdes.push_back(r);
        cies.insert(r.cie_offset);
      }
  std::vector<Record> out;
  for (const auto& r : all)
    if ((r.cie && cies.count(r.offset)) || (!r.cie && std::find_if(fdes.begin(), fdes.end(), [&](const Record& f) {
                                               return f.offset == r.offset;
                                             }) != fdes.end()))
      out.push_back(r);
  for (uint64_t c : cies)
    if (std::find_if(out.begin(), out.end(), [&](const Record& r) { return r.cie && r.offset == c; }) == out.end())
      fail("{}: an FDE names a CIE at {:#x}, where there is none", obj.where(s), c);
  return out;
}

template <typename F>
void each_reloc_in(const elf::Section& s, const Record& rec, F f) {
  for (const auto& r : s.relocs)
    if (r.offset >= rec.offset && r.offset < rec.offset + rec.size) f(r);
}

}  // namespace

std::set<uint32_t> unwind_sections(const elf::Object& post, const std::set<uint32_t>& carried) {
  std::set<uint32_t> out;
  const elf::Section* s = eh_frame_of(post);
  if (!s) return out;
  auto take_dw_ref = [&](const elf::Reloc& r) {
    if (is_dw_ref(post, r)) out.insert(post.symbol(r.symbol).section);
  };
  for (const auto& rec : kept(post, *s, carried))
    each_reloc_in(*s, rec, [&](const elf::Reloc& r) {
      if (r.symbol == 0 || !post.symbol(r.symbol).in_section()) return;
      uint32_t target = post.symbol(r.symbol).section;
      if (is_lsda(post.section(target)) && out.insert(target).second)
        for (const auto& lr : post.section(target).relocs) take_dw_ref(lr);
      take_dw_ref(r);
    });
  for (uint32_t c : carried) out.erase(c);
  return out;
}

CarriedFrames carried_frames(const elf::Object& post, const std::set<uint32_t>& carried) {
  CarriedFrames out;
  const elf::Section* s = eh_frame_of(post);
  if (!s) return out;
  out.section = s->index;
  std::map<uint64_t, uint64_t> moved;   // original record offset -> output offset
  for (const auto& rec : kept(post, *s, carried)) {
    const uint64_t at = out.bytes.size();
    moved[rec.offset] = at;
    out.bytes.insert(out.bytes.end(), s->bytes.begin() + static_cast<ptrdiff_t>(rec.offset),
                     s->bytes.begin() + static_cast<ptrdiff_t>(rec.offset + rec.size));
    if (!rec.cie) {
      // CIEs come before their FDEs in gas's output, and so in ours.
      auto cie = moved.find(rec.cie_offset);
      if (cie == moved.end()) fail("{}: an FDE before its CIE", post.where(*s, static_cast<int64_t>(rec.offset)));
      put_le32(std::span(out.bytes).subspan(at + 4, 4), static_cast<uint32_t>(at + 4 - cie->second));
      ++out.fdes;
    }
    each_reloc_in(*s, rec, [&](const elf::Reloc& r) { out.relocs.push_back({at + (r.offset - rec.offset), &r}); });
  }
  out.bytes.insert(out.bytes.end(), 4, 0);   // the terminator
  return out;
}

}  // namespace ls::update::eh
