// What a relocation site reveals about, or needs from, the symbol it names. Shared by
// run-pre matching (which learns these from running code) and the loader (which needs
// them to link new code).
#pragma once

namespace ls {

enum class View {
  Address,      // the symbol's run address
  GotSlot,      // the address of a GOT entry holding the symbol's address
  TlsOffset,    // the symbol's offset from the thread pointer
  TlsGotSlot,   // the address of a GOT entry for the symbol's TLS (tp offset, or GD pair)
};

inline const char* to_string(View v) {
  switch (v) {
    case View::Address: return "address";
    case View::GotSlot: return "GOT slot";
    case View::TlsOffset: return "TLS offset";
    case View::TlsGotSlot: return "TLS GOT slot";
  }
  return "?";
}

}  // namespace ls
