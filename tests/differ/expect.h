// The `expect` file of a differ case, and the check of `livesplice diff --json` output
// against it. The format is documented in tests/differ/README.md; in short:
//
//   # what the case tests                        (first line, required)
//   cflags -fPIC                                 extra gcc flags for every mode
//   changed  NAME-GLOB... [@MODES]               same | changed | new | removed | any
//   changed? NAME-GLOB... [@MODES]               '?': only if such a symbol is reported
//   included NAME-GLOB... [@MODES]               reported and carried by the update
//   excluded NAME-GLOB... [@MODES]               reported and not carried
//   unsafe   NAME-GLOB... [@MODES]               an "unsafe" entry names it ('?' allowed)
//   exit     CODE [FILE.c] [@MODES]              expected exit status of `livesplice diff`
//
// A NAME-GLOB is an fnmatch pattern, optionally qualified by the source file it must come
// from (`line.c:line_add`). @MODES is a comma-separated list of mode patterns (`@O2,O3`,
// `@O2*`), or `@!LIST` for every mode but those.
//
// Strictness is the point: a reported symbol that no status line names must be `same`,
// an "unsafe" entry that no unsafe line names is an error, and a status line without
// '?' must name at least one reported symbol (so `same foo.isra.*` also proves that GCC
// made the clone).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ls::difftest {

struct NameGlob {
  std::string file;   // "" = any object; else the .c path relative to the case's pre/
  std::string glob;   // fnmatch pattern on the symbol name
  bool matches(const std::string& file_c, const std::string& name) const;
};

struct ExpectLine {
  enum class Kind { Status, Included, Excluded, Unsafe, Exit, Cflags };
  Kind kind = Kind::Status;
  std::string status;            // Status: same|changed|new|removed|any
  bool optional = false;         // the '?' suffix
  std::vector<NameGlob> names;   // Status/Included/Excluded/Unsafe
  int exit_code = 0;             // Exit
  std::string exit_file;         // Exit: "" = every object
  std::vector<std::string> cflags;
  std::vector<std::string> modes;  // empty = every mode
  bool negate_modes = false;
  int lineno = 0;
  std::string text;              // the line as written, for messages

  bool applies_to(const std::string& mode) const;
};

struct Expect {
  std::string description;       // the first line's comment
  std::vector<ExpectLine> lines;

  std::vector<std::string> cflags() const;
  // The exit status expected for one object: the last applicable `exit` line naming
  // this file, else the last applicable one naming none; -1 if there is none.
  int exit_for(const std::string& mode, const std::string& file_c) const;
};

// Throws std::runtime_error("expect:LINE: ...") on a malformed file.
Expect parse_expect(const std::string& text);

// The result of one object pair: which .c, the exit status and the parsed JSON.
struct ObjectResult {
  std::string file_c;            // e.g. "a.c" or "sub/b.c"
  int exit_code = -1;
  nlohmann::json json;
};

// Checks every object of one (case, mode) against the expectations and the invariants
// every diff must satisfy (summary counts agree with the symbols, exit 2 iff something is
// unsafe, changed functions are included, ...). Returns one message per problem.
std::vector<std::string> check(const Expect& expect, const std::string& mode,
                               const std::vector<ObjectResult>& results);

}  // namespace ls::difftest
