#include "support/readelf.h"

#include <algorithm>
#include <regex>
#include <sstream>

#include <elf.h>

#include "support/support.h"

namespace lstest {

static std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

static uint64_t hex(const std::string& s) { return std::stoull(s, nullptr, 16); }

std::vector<ReadelfSection> readelf_sections(const std::string& path) {
  //   [ 1] .text  PROGBITS  0000000000000000 000040 000038 00  AX  0   0 16
  static const std::regex row(
      R"(^\s*\[\s*(\d+)\]\s+(\S*)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+(?:([A-Za-z]+)\s+)?(\d+)\s+(\d+)\s+(\d+)\s*$)");
  std::vector<ReadelfSection> out;
  for (const auto& line : lines(sh_stdout("LC_ALL=C readelf -SW " + quote(path)))) {
    std::smatch m;
    if (!std::regex_match(line, m, row)) continue;
    ReadelfSection s;
    s.index = static_cast<uint32_t>(std::stoul(m[1]));
    s.name = m[2];
    s.type = m[3];
    s.offset = hex(m[5]);
    s.size = hex(m[6]);
    s.entsize = hex(m[7]);
    s.flags = m[8];
    std::sort(s.flags.begin(), s.flags.end());
    s.link = static_cast<uint32_t>(std::stoul(m[9]));
    s.info = static_cast<uint32_t>(std::stoul(m[10]));
    s.align = std::stoull(m[11]);
    // The NULL section has an empty name, which the pattern reads as a shifted row.
    if (s.index == 0) s = ReadelfSection{};
    out.push_back(s);
  }
  return out;
}

std::vector<ReadelfSymbol> readelf_symbols(const std::string& path) {
  //      8: 0000000000000000    56 FUNC    GLOBAL DEFAULT    1 f
  static const std::regex row(
      R"(^\s*(\d+):\s+([0-9a-f]+)\s+(\d+|0x[0-9a-f]+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s?(.*)$)");
  std::vector<ReadelfSymbol> out;
  bool in_symtab = false;
  for (const auto& line : lines(sh_stdout("LC_ALL=C readelf -sW " + quote(path)))) {
    if (line.rfind("Symbol table '", 0) == 0) {
      in_symtab = line.find("'.symtab'") != std::string::npos;
      continue;
    }
    std::smatch m;
    if (!in_symtab || !std::regex_match(line, m, row)) continue;
    ReadelfSymbol s;
    s.index = static_cast<uint32_t>(std::stoul(m[1]));
    s.value = hex(m[2]);
    s.size = std::stoull(m[3], nullptr, 0);
    s.type = m[4];
    s.bind = m[5];
    s.visibility = m[6];
    s.ndx = m[7];
    s.name = m[8];
    out.push_back(s);
  }
  return out;
}

std::map<uint64_t, std::vector<ReadelfReloc>> readelf_relocs(const std::string& path) {
  static const std::regex header(R"(^Relocation section '.*' at offset 0x([0-9a-f]+) contains.*)");
  static const std::regex row(R"(^([0-9a-f]{16})\s+([0-9a-f]{16})\s+(\S+)\s*(.*)$)");
  static const std::regex with_symbol(R"(.*\s([+-])\s*([0-9a-f]+)\s*$)");
  std::map<uint64_t, std::vector<ReadelfReloc>> out;
  std::vector<ReadelfReloc>* current = nullptr;
  for (const auto& line : lines(sh_stdout("LC_ALL=C readelf -rW " + quote(path)))) {
    std::smatch m;
    if (std::regex_match(line, m, header)) {
      current = &out[hex(m[1])];
      continue;
    }
    if (!current || !std::regex_match(line, m, row)) continue;
    ReadelfReloc r;
    r.offset = hex(m[1]);
    uint64_t info = hex(m[2]);
    r.symbol = static_cast<uint32_t>(ELF64_R_SYM(info));
    r.type = static_cast<uint32_t>(ELF64_R_TYPE(info));
    r.type_name = m[3];
    std::string rest = m[4];
    std::smatch a;
    if (std::regex_match(rest, a, with_symbol)) {
      auto v = static_cast<int64_t>(hex(a[2]));
      r.addend = a[1] == "-" ? -v : v;
    } else if (!rest.empty()) {
      // No symbol: readelf prints the addend alone.
      bool neg = rest[0] == '-';
      r.addend = static_cast<int64_t>(hex(rest.substr(neg ? 1 : 0)));
      if (neg) r.addend = -r.addend;
    }
    current->push_back(r);
  }
  return out;
}

std::string flag_letters(uint64_t flags) {
  static const std::pair<uint64_t, char> letters[] = {
      {SHF_WRITE, 'W'},      {SHF_ALLOC, 'A'},      {SHF_EXECINSTR, 'X'},
      {SHF_MERGE, 'M'},      {SHF_STRINGS, 'S'},    {SHF_INFO_LINK, 'I'},
      {SHF_LINK_ORDER, 'L'}, {SHF_OS_NONCONFORMING, 'O'}, {SHF_GROUP, 'G'},
      {SHF_TLS, 'T'},        {SHF_COMPRESSED, 'C'}, {SHF_EXCLUDE, 'E'},
      {0x200000 /* SHF_GNU_RETAIN */, 'R'},       {0x10000000 /* SHF_X86_64_LARGE */, 'l'},
  };
  std::string out;
  for (auto [bit, c] : letters)
    if (flags & bit) out += c;
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace lstest
