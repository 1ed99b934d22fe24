// Loading a relocatable ELF object into validated records.
//
// libelf parses the headers; we validate everything libelf leaves to its caller: that
// section contents lie inside the file, that links and string offsets are in range, that
// every relocation names an existing symbol and patches bytes inside its section. A
// violation throws ls::Error naming the file (and section/offset) — never a crash.
#include "elf/object.h"

#include <elf.h>
#include <gelf.h>
#include <libelf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

#include "elf/relocs.h"

namespace ls::elf {

std::string_view to_string(RelocKind k) {
  switch (k) {
    case RelocKind::None: return "none";
    case RelocKind::Abs64: return "abs64";
    case RelocKind::Abs32: return "abs32";
    case RelocKind::Abs32S: return "abs32s";
    case RelocKind::PcRel32: return "pcrel32";
    case RelocKind::PcRel64: return "pcrel64";
    case RelocKind::Plt32: return "plt32";
    case RelocKind::GotPcRel: return "gotpcrel";
    case RelocKind::GotOff64: return "gotoff64";
    case RelocKind::GotPc32: return "gotpc32";
    case RelocKind::TlsGd: return "tlsgd";
    case RelocKind::TlsLd: return "tlsld";
    case RelocKind::DtpOff32: return "dtpoff32";
    case RelocKind::DtpOff64: return "dtpoff64";
    case RelocKind::GotTpOff: return "gottpoff";
    case RelocKind::TpOff32: return "tpoff32";
    case RelocKind::TpOff64: return "tpoff64";
    case RelocKind::Size32: return "size32";
    case RelocKind::Size64: return "size64";
    case RelocKind::Other: return "other";
  }
  return "?";
}

bool is_pc_relative(RelocKind k) {
  switch (k) {
    case RelocKind::PcRel32:
    case RelocKind::PcRel64:
    case RelocKind::Plt32:
    case RelocKind::GotPcRel:
    case RelocKind::GotPc32:
    case RelocKind::TlsGd:
    case RelocKind::TlsLd:
    case RelocKind::GotTpOff: return true;
    default: return false;
  }
}

bool Section::alloc() const { return flags & SHF_ALLOC; }
bool Section::exec() const { return flags & SHF_EXECINSTR; }
bool Section::write() const { return flags & SHF_WRITE; }
bool Section::nobits() const { return type == SHT_NOBITS; }
bool Section::merge_strings() const { return (flags & SHF_MERGE) && (flags & SHF_STRINGS); }
bool Section::merge_constants() const { return (flags & SHF_MERGE) && !(flags & SHF_STRINGS); }
bool Section::tls() const { return flags & SHF_TLS; }

namespace {

struct ElfCloser {
  void operator()(Elf* e) const { elf_end(e); }
};
using ElfHandle = std::unique_ptr<Elf, ElfCloser>;

SymbolType symbol_type(unsigned t) {
  switch (t) {
    case STT_NOTYPE: return SymbolType::NoType;
    case STT_OBJECT: return SymbolType::Object;
    case STT_FUNC:
    case STT_GNU_IFUNC: return SymbolType::Func;
    case STT_SECTION: return SymbolType::Section;
    case STT_FILE: return SymbolType::File;
    case STT_TLS: return SymbolType::Tls;
    default: return SymbolType::Other;
  }
}

Binding symbol_binding(unsigned b) {
  switch (b) {
    case STB_LOCAL: return Binding::Local;
    case STB_WEAK: return Binding::Weak;
    default: return Binding::Global;
  }
}

}  // namespace

Object Object::load(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::vector<uint8_t> image;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) image.resize(st.st_size);
  size_t done = 0;
  while (done < image.size()) {
    ssize_t n = ::read(fd, image.data() + done, image.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      fail("{}: read error: {}", path, n < 0 ? std::strerror(err) : "file shrank while reading");
    }
    done += n;
  }
  ::close(fd);
  return from_memory(std::move(image), path);
}

Object Object::from_memory(std::vector<uint8_t> image, std::string name) {
  Object o;
  o.path_ = std::move(name);
  o.image_ = std::make_shared<const std::vector<uint8_t>>(std::move(image));
  o.parse();
  return o;
}

std::string Object::where(const Section& s, int64_t offset) const {
  return ls::where(path_, s.name, offset);
}

const Section* Object::find_section(std::string_view name) const {
  for (const auto& s : sections_)
    if (s.name == name) return &s;
  return nullptr;
}

const Symbol* Object::find_symbol(std::string_view name) const {
  for (const auto& s : symbols_)
    if (s.defined() && s.name == name) return &s;
  return nullptr;
}

void Object::parse() {
  const std::string& file = path_;
  const std::vector<uint8_t>& image_ = *this->image_;
  if (elf_version(EV_CURRENT) == EV_NONE) fail("libelf: {}", elf_errmsg(-1));
  if (image_.size() < EI_NIDENT || std::memcmp(image_.data(), ELFMAG, SELFMAG) != 0)
    fail("{}: not an ELF file", file);
  if (image_[EI_CLASS] != ELFCLASS64) fail("{}: not a 64-bit ELF object", file);
  if (image_[EI_DATA] != ELFDATA2LSB) fail("{}: not a little-endian ELF object", file);
  if (image_.size() < sizeof(Elf64_Ehdr)) fail("{}: truncated ELF header", file);

  // libelf wants a mutable pointer but only reads (ELF_C_READ_MMAP semantics).
  // Validate the section header table from the raw header first: libelf quietly reports
  // zero sections for a table that runs past the end of the file.
  Elf64_Ehdr raw;
  std::memcpy(&raw, image_.data(), sizeof raw);
  if (raw.e_shoff != 0) {
    if (raw.e_shentsize != sizeof(Elf64_Shdr))
      fail("{}: section header entries are {} bytes, not {}", file, raw.e_shentsize, sizeof(Elf64_Shdr));
    // e_shnum 0 with a table means the count is in the first header's sh_size.
    uint64_t count = raw.e_shnum ? raw.e_shnum : 1;
    if (raw.e_shoff > image_.size() || count > (image_.size() - raw.e_shoff) / sizeof(Elf64_Shdr))
      fail("{}: section header table (offset {:#x}, {} entries) lies outside the file ({:#x} bytes)", file,
           raw.e_shoff, count, image_.size());
  }

  ElfHandle elf(elf_memory(const_cast<char*>(reinterpret_cast<const char*>(image_.data())), image_.size()));
  if (!elf) fail("{}: {}", file, elf_errmsg(-1));
  GElf_Ehdr eh;
  if (!gelf_getehdr(elf.get(), &eh)) fail("{}: bad ELF header: {}", file, elf_errmsg(-1));
  if (eh.e_type != ET_REL) fail("{}: not a relocatable object (e_type {})", file, eh.e_type);
  if (eh.e_machine == EM_X86_64) machine_ = Machine::X86_64;
  else if (eh.e_machine == EM_AARCH64) fail("{}: arm64 objects are not supported yet", file);
  else fail("{}: unsupported machine {}", file, eh.e_machine);

  size_t shnum = 0, shstrndx = 0;
  if (elf_getshdrnum(elf.get(), &shnum) != 0) fail("{}: bad section count: {}", file, elf_errmsg(-1));
  if (elf_getshdrstrndx(elf.get(), &shstrndx) != 0)
    fail("{}: bad section-name table index: {}", file, elf_errmsg(-1));
  if (shnum == 0) fail("{}: no sections", file);
  if (eh.e_shoff > image_.size() || shnum > (image_.size() - eh.e_shoff) / sizeof(Elf64_Shdr))
    fail("{}: section headers (offset {:#x}, {} entries) lie outside the file", file, eh.e_shoff, shnum);
  if (shstrndx >= shnum) fail("{}: section-name table index {} out of range", file, shstrndx);

  sections_.resize(shnum);
  for (size_t i = 0; i < shnum; ++i) {
    Elf_Scn* scn = elf_getscn(elf.get(), i);
    GElf_Shdr sh;
    if (!scn || !gelf_getshdr(scn, &sh)) fail("{}: section {}: bad header", file, i);
    Section& s = sections_[i];
    s.index = i;
    s.type = sh.sh_type;
    s.flags = sh.sh_flags;
    s.size = sh.sh_size;
    s.align = sh.sh_addralign;
    s.entsize = sh.sh_entsize;
    s.link = sh.sh_link;
    s.info = sh.sh_info;
    if (i == 0) continue;
    const char* nm = elf_strptr(elf.get(), shstrndx, sh.sh_name);
    if (!nm) fail("{}: section {}: name offset {:#x} outside the name table", file, i, sh.sh_name);
    s.name = nm;
    if (s.link >= shnum) fail("{}: sh_link {} out of range", ls::where(file, s.name), s.link);
    if (sh.sh_type == SHT_NOBITS || sh.sh_type == SHT_NULL) continue;
    if (sh.sh_offset > image_.size() || sh.sh_size > image_.size() - sh.sh_offset)
      fail("{}: contents (offset {:#x}, size {:#x}) lie outside the file ({:#x} bytes)",
           ls::where(file, s.name), sh.sh_offset, sh.sh_size, image_.size());
    s.bytes = Bytes(image_.data() + sh.sh_offset, sh.sh_size);
  }

  // Symbols. An object without a symbol table is legal (and useless); keep going.
  uint32_t symtab = 0, symtab_shndx = 0;
  for (const auto& s : sections_) {
    if (s.type == SHT_SYMTAB) {
      if (symtab) fail("{}: more than one symbol table", file);
      symtab = s.index;
    } else if (s.type == SHT_SYMTAB_SHNDX) {
      symtab_shndx = s.index;
    }
  }
  if (symtab) {
    const Section& st = sections_[symtab];
    if (sections_[st.link].type != SHT_STRTAB)
      fail("{}: linked string table {} is not a string table", ls::where(file, st.name), st.link);
    if (st.entsize != sizeof(Elf64_Sym)) fail("{}: bad entry size {}", ls::where(file, st.name), st.entsize);
    Elf_Scn* scn = elf_getscn(elf.get(), symtab);
    Elf_Data* data = elf_getdata(scn, nullptr);
    Elf_Data* xdata = symtab_shndx ? elf_getdata(elf_getscn(elf.get(), symtab_shndx), nullptr) : nullptr;
    if (!data) fail("{}: {}", ls::where(file, st.name), elf_errmsg(-1));
    size_t count = st.size / sizeof(Elf64_Sym);
    symbols_.resize(count);
    for (size_t i = 0; i < count; ++i) {
      GElf_Sym sym;
      Elf32_Word xndx = 0;
      if (!gelf_getsymshndx(data, xdata, i, &sym, &xndx))
        fail("{}: symbol {}: {}", ls::where(file, st.name), i, elf_errmsg(-1));
      Symbol& y = symbols_[i];
      y.index = i;
      const char* nm = elf_strptr(elf.get(), st.link, sym.st_name);
      if (!nm) fail("{}: symbol {}: name offset {:#x} outside the string table", ls::where(file, st.name), i, sym.st_name);
      y.name = nm;
      y.type = symbol_type(GELF_ST_TYPE(sym.st_info));
      y.binding = symbol_binding(GELF_ST_BIND(sym.st_info));
      y.visibility = GELF_ST_VISIBILITY(sym.st_other);
      y.section = sym.st_shndx == SHN_XINDEX ? xndx : sym.st_shndx;
      y.value = sym.st_value;
      y.size = sym.st_size;
      if (y.section != kUndef && y.section < SHN_LORESERVE && y.section >= shnum)
        fail("{}: symbol '{}' refers to section {} of {}", ls::where(file, st.name), y.name, y.section, shnum);
      if (y.type == SymbolType::Section && y.in_section()) y.name = sections_[y.section].name;
      if (y.type == SymbolType::File && source_file_.empty()) source_file_ = y.name;
    }
  }

  // Relocations of everything but debug sections (update files keep pre code in
  // non-allocated sections). Debug-section relocations are left raw: nothing here
  // interprets them, and sqlite-sized objects have hundreds of thousands.
  for (auto& rs : sections_) {
    if (rs.type == SHT_REL) {
      if (rs.info < shnum && sections_[rs.info].alloc())
        fail("{}: SHT_REL relocations are not supported (x86-64 uses SHT_RELA)", ls::where(file, rs.name));
      continue;
    }
    if (rs.type != SHT_RELA) continue;
    if (rs.info == 0 || rs.info >= shnum || rs.info == rs.index)
      fail("{}: applies to section {}, which does not exist", ls::where(file, rs.name), rs.info);
    Section& target = sections_[rs.info];
    target.rela_section = rs.index;
    if (target.name.starts_with(".debug") || target.name.starts_with(".zdebug")) continue;
    if (rs.link != symtab) fail("{}: linked to section {}, not the symbol table", ls::where(file, rs.name), rs.link);
    if (rs.entsize != sizeof(Elf64_Rela)) fail("{}: bad entry size {}", ls::where(file, rs.name), rs.entsize);
    Elf_Data* data = elf_getdata(elf_getscn(elf.get(), rs.index), nullptr);
    if (!data) fail("{}: {}", ls::where(file, rs.name), elf_errmsg(-1));
    size_t count = rs.size / sizeof(Elf64_Rela);
    target.relocs.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      GElf_Rela r;
      if (!gelf_getrela(data, i, &r)) fail("{}: entry {}: {}", ls::where(file, rs.name), i, elf_errmsg(-1));
      Reloc rel;
      rel.offset = r.r_offset;
      rel.type = GELF_R_TYPE(r.r_info);
      rel.symbol = GELF_R_SYM(r.r_info);
      rel.addend = r.r_addend;
      auto info = reloc_info(machine_, rel.type);
      if (!info) fail("{}: unknown relocation type {}", where(target, rel.offset), rel.type);
      rel.kind = info->kind;
      rel.width = info->width;
      if (rel.symbol >= symbols_.size())
        fail("{}: relocation names symbol {} of {}", where(target, rel.offset), rel.symbol, symbols_.size());
      if (rel.offset > target.size || rel.width > target.size - rel.offset)
        fail("{}: relocation patches {} bytes past the end of the section ({:#x} bytes)",
             where(target, rel.offset), rel.width, target.size);
      target.relocs.push_back(rel);
    }
    std::stable_sort(target.relocs.begin(), target.relocs.end(),
                     [](const Reloc& a, const Reloc& b) { return a.offset < b.offset; });
  }
}

}  // namespace ls::elf
