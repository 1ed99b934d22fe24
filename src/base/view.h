// What a relocation site reveals about, or needs from, the symbol it names. Shared by
// run-pre matching (which learns these from running code) and the loader (which needs
// them to link new code).
#pragma once

namespace ls {

enum class View {
  Address,      // the symbol's run address
  GotSlot,      // the address of a GOT entry holding the symbol's address
  TlsOffset,    // the symbol's offset from the thread pointer
  TlsGotSlot,   // the address of an initial-exec GOT entry: it holds the symbol's tp offset
  TlsGdPair,    // the address of a general-dynamic GOT pair (module id, offset in its
                // TLS block): the argument __tls_get_addr takes
};

inline const char* to_string(View v) {
  switch (v) {
    case View::Address: return "address";
    case View::GotSlot: return "GOT slot";
    case View::TlsOffset: return "TLS offset";
    case View::TlsGotSlot: return "TLS GOT slot";
    case View::TlsGdPair: return "TLS GD pair";
  }
  return "?";
}

}  // namespace ls
