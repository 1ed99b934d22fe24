#include "base/diag.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace ls {

std::string where(std::string_view file, std::string_view section, int64_t offset) {
  std::string s(file);
  if (!section.empty()) s += fmt::format(":({})", section);
  if (offset >= 0) s += fmt::format("+{:#x}", offset);
  return s;
}

std::string printable(std::string_view text, bool multiline) {
  std::string out;
  out.reserve(text.size());
  auto escape = [&](unsigned char c) { out += fmt::format("\\x{:02x}", c); };
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n' || c == '\t') {
      if (multiline) out += static_cast<char>(c);
      else escape(c);
    } else if (c < 0x20 || c == 0x7f) {
      escape(c);
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      // A well-formed UTF-8 sequence of 2-4 bytes passes whole (C1 controls excepted);
      // anything else is escaped byte by byte.
      size_t n = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
      bool ok = n && i + n <= text.size();
      for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
      if (ok && n == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) ok = false;   // C1
      if (!ok) {
        escape(c);
        continue;
      }
      out.append(text.substr(i, n));
      i += n - 1;
    }
  }
  return out;
}

void Context::progress(std::string_view msg) const {
  if (!quiet) fmt::print(stderr, "==> {}\n", msg);
}

void Context::note(std::string_view msg) const {
  if (verbose > 0) fmt::print(stderr, "    {}\n", msg);
}

void Context::warn(std::string_view msg) const { fmt::print(stderr, "warning: {}\n", msg); }

void Context::report(std::string_view msg) const { fmt::print(stderr, "livesplice: {}\n", printable(msg, true)); }

Exit Context::failed(std::string_view subject, const Status& s, std::string_view done_key,
                     std::string_view id) const {
  report(fmt::format("{}: {}", subject, s.message()));
  if (json && !done_key.empty()) {
    nlohmann::json j{{std::string(done_key), false}, {"error", s.message()}};
    if (!id.empty()) j["id"] = id;
    // The message may quote a target's bytes: never let them make the JSON unprintable.
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return s.code() == Exit::Ok ? Exit::ToolError : s.code();
}

}  // namespace ls
