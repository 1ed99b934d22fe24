// Parsing `expect` files and checking a diff's JSON against them (see expect.h).
#include "expect.h"

#include <fnmatch.h>

#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

namespace ls::difftest {
namespace {

const std::set<std::string> kStatuses = {"same", "changed", "new", "removed"};

std::vector<std::string> split_ws(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

bool glob_match(const std::string& pattern, const std::string& s) {
  return fnmatch(pattern.c_str(), s.c_str(), 0) == 0;
}

NameGlob parse_name(const std::string& token) {
  auto colon = token.find(':');
  if (colon != std::string::npos && colon >= 2 && token.compare(colon - 2, 2, ".c") == 0)
    return {token.substr(0, colon), token.substr(colon + 1)};
  return {"", token};
}

std::string where(const ExpectLine& l) {
  return "expect:" + std::to_string(l.lineno) + " '" + l.text + "'";
}

}  // namespace

bool NameGlob::matches(const std::string& file_c, const std::string& name) const {
  return (file.empty() || file == file_c) && glob_match(glob, name);
}

bool ExpectLine::applies_to(const std::string& mode) const {
  if (modes.empty()) return true;
  bool listed = false;
  for (const auto& m : modes) listed = listed || glob_match(m, mode);
  return listed != negate_modes;
}

std::vector<std::string> Expect::cflags() const {
  std::vector<std::string> out;
  for (const auto& l : lines)
    if (l.kind == ExpectLine::Kind::Cflags) out.insert(out.end(), l.cflags.begin(), l.cflags.end());
  return out;
}

int Expect::exit_for(const std::string& mode, const std::string& file_c) const {
  int general = -1, specific = -1;
  for (const auto& l : lines) {
    if (l.kind != ExpectLine::Kind::Exit || !l.applies_to(mode)) continue;
    if (l.exit_file.empty()) general = l.exit_code;
    else if (l.exit_file == file_c) specific = l.exit_code;
  }
  return specific != -1 ? specific : general;
}

Expect parse_expect(const std::string& text) {
  Expect e;
  std::istringstream in(text);
  std::string raw;
  int lineno = 0;
  while (std::getline(in, raw)) {
    ++lineno;
    auto fail = [&](const std::string& why) {
      throw std::runtime_error("expect:" + std::to_string(lineno) + ": " + why + ": '" + raw + "'");
    };
    if (lineno == 1) {
      if (raw.rfind("# ", 0) != 0 || raw.size() < 3)
        fail("the first line must be a '# ' comment saying what the case tests");
      e.description = raw.substr(2);
      continue;
    }
    std::string body = raw.substr(0, raw.find('#'));
    auto words = split_ws(body);
    if (words.empty()) continue;

    ExpectLine l;
    l.lineno = lineno;
    l.text = body.substr(body.find_first_not_of(" \t"));
    while (!l.text.empty() && (l.text.back() == ' ' || l.text.back() == '\t')) l.text.pop_back();

    std::string key = words[0];
    words.erase(words.begin());
    if (key == "cflags") {
      if (words.empty()) fail("cflags needs at least one flag");
      l.kind = ExpectLine::Kind::Cflags;
      l.cflags = words;
      e.lines.push_back(std::move(l));
      continue;
    }
    if (!words.empty() && words.back()[0] == '@') {
      std::string spec = words.back().substr(1);
      words.pop_back();
      if (!spec.empty() && spec[0] == '!') {
        l.negate_modes = true;
        spec.erase(0, 1);
      }
      l.modes = split_commas(spec);
      if (l.modes.empty()) fail("empty @MODES");
    }
    for (const auto& w : words)
      if (w[0] == '@') fail("@MODES must come last, once");

    if (key == "exit") {
      l.kind = ExpectLine::Kind::Exit;
      if (words.empty() || words.size() > 2) fail("expected 'exit CODE [FILE.c] [@MODES]'");
      try {
        size_t used = 0;
        l.exit_code = std::stoi(words[0], &used);
        if (used != words[0].size()) throw std::invalid_argument("trailing");
      } catch (const std::exception&) {
        fail("exit code is not a number");
      }
      if (l.exit_code < 0 || l.exit_code > 3) fail("exit code must be 0..3");
      if (words.size() == 2) l.exit_file = words[1];
      e.lines.push_back(std::move(l));
      continue;
    }

    bool optional = !key.empty() && key.back() == '?';
    if (optional) key.pop_back();
    l.optional = optional;
    if (kStatuses.count(key) || key == "any") {
      l.kind = ExpectLine::Kind::Status;
      l.status = key;
      if (key == "any" && optional) fail("'any?' means nothing; use 'any'");
    } else if (key == "included" || key == "excluded") {
      l.kind = key == "included" ? ExpectLine::Kind::Included : ExpectLine::Kind::Excluded;
      if (optional) fail("'" + key + "?' is not supported");
    } else if (key == "unsafe") {
      l.kind = ExpectLine::Kind::Unsafe;
    } else {
      fail("unknown keyword '" + key + "'");
    }
    if (words.empty()) fail("missing NAME-GLOB");
    for (const auto& w : words) l.names.push_back(parse_name(w));
    e.lines.push_back(std::move(l));
  }
  if (lineno == 0) throw std::runtime_error("expect: empty file");
  return e;
}

std::vector<std::string> check(const Expect& expect, const std::string& mode,
                               const std::vector<ObjectResult>& results) {
  using Kind = ExpectLine::Kind;
  std::vector<std::string> problems;
  // How many reported symbols (or unsafe entries) each (line, glob) named, over all objects.
  std::map<std::pair<const ExpectLine*, size_t>, int> hits;

  for (const auto& r : results) {
    const std::string obj = r.file_c + ": ";
    const auto& j = r.json;
    if (!j.is_object() || !j.contains("symbols") || !j["symbols"].is_array() ||
        !j.contains("unsafe") || !j["unsafe"].is_array() || !j.contains("summary") ||
        !j["summary"].is_object()) {
      problems.push_back(obj + "JSON lacks 'symbols', 'unsafe' or 'summary'");
      continue;
    }

    std::map<std::string, int> counts;
    for (const auto& s : j["symbols"]) {
      if (!s.is_object() || !s.contains("name") || !s["name"].is_string() ||
          !s.contains("status") || !s["status"].is_string() || !s.contains("kind") ||
          !s["kind"].is_string() || !s.contains("included") || !s["included"].is_boolean()) {
        problems.push_back(obj + "malformed symbol entry " + s.dump());
        continue;
      }
      std::string name = s["name"], status = s["status"], kind = s["kind"];
      bool included = s["included"];
      if (!kStatuses.count(status)) problems.push_back(obj + name + ": unknown status '" + status + "'");
      if (kind != "func" && kind != "object") problems.push_back(obj + name + ": unknown kind '" + kind + "'");
      counts[status]++;

      const ExpectLine* rule = nullptr;
      for (const auto& l : expect.lines) {
        if (l.kind != Kind::Status && l.kind != Kind::Included && l.kind != Kind::Excluded) continue;
        if (!l.applies_to(mode)) continue;
        for (size_t g = 0; g < l.names.size(); ++g) {
          if (!l.names[g].matches(r.file_c, name)) continue;
          hits[{&l, g}]++;
          if (l.kind == Kind::Status && !rule) rule = &l;
          if (l.kind == Kind::Included && !included)
            problems.push_back(obj + name + " (" + status + ") is not included; " + where(l));
          if (l.kind == Kind::Excluded && included)
            problems.push_back(obj + name + " (" + status + ") is included; " + where(l));
        }
      }
      if (rule) {
        if (rule->status != "any" && status != rule->status)
          problems.push_back(obj + name + " is " + status + ", expected " + rule->status + " (" + where(*rule) + ")");
      } else if (status != "same") {
        problems.push_back(obj + name + " is " + status + ", expected same (no line of expect names it)");
      }
      // Invariants of any diff.
      if (status == "changed" && kind == "func" && !included)
        problems.push_back(obj + name + " is a changed function but not included");
      if (status == "removed" && included)
        problems.push_back(obj + name + " is removed but included");
    }

    for (const auto& u : j["unsafe"]) {
      if (!u.is_object() || !u.contains("symbol") || !u["symbol"].is_string() ||
          !u.contains("reason") || !u["reason"].is_string()) {
        problems.push_back(obj + "malformed unsafe entry " + u.dump());
        continue;
      }
      std::string sym = u["symbol"];
      bool allowed = false;
      for (const auto& l : expect.lines) {
        if (l.kind != Kind::Unsafe || !l.applies_to(mode)) continue;
        for (size_t g = 0; g < l.names.size(); ++g)
          if (l.names[g].matches(r.file_c, sym)) {
            hits[{&l, g}]++;
            allowed = true;
          }
      }
      if (!allowed)
        problems.push_back(obj + "unexpected unsafe entry for '" + sym + "': " + std::string(u["reason"]));
    }

    // The summary must agree with the lists it summarises.
    for (const char* st : {"changed", "new", "removed", "same"}) {
      const auto& sm = j["summary"];
      if (!sm.contains(st) || !sm[st].is_number_integer() || sm[st].get<int>() != counts[st])
        problems.push_back(obj + "summary." + st + " is " + (sm.contains(st) ? sm[st].dump() : "missing") +
                           " but " + std::to_string(counts[st]) + " symbols have that status");
    }
    const auto& sm = j["summary"];
    if (!sm.contains("unsafe") || !sm["unsafe"].is_number_integer() ||
        sm["unsafe"].get<size_t>() != j["unsafe"].size())
      problems.push_back(obj + "summary.unsafe disagrees with the 'unsafe' list");

    int want = expect.exit_for(mode, r.file_c);
    if (want < 0)
      problems.push_back(obj + "no 'exit' line of expect applies to this object in mode " + mode);
    else if (r.exit_code != want)
      problems.push_back(obj + "exit status " + std::to_string(r.exit_code) + ", expected " + std::to_string(want));
    bool unsafe = !j["unsafe"].empty();
    if ((r.exit_code == 2) != unsafe)
      problems.push_back(obj + "exit status " + std::to_string(r.exit_code) + " but 'unsafe' is " +
                         (unsafe ? "not empty" : "empty") + " (exit 2 iff unsafe)");
  }

  for (const auto& l : expect.lines) {
    if (l.kind == Kind::Exit || l.kind == Kind::Cflags || !l.applies_to(mode)) continue;
    if (l.optional || (l.kind == Kind::Status && l.status == "any")) continue;
    for (size_t g = 0; g < l.names.size(); ++g) {
      if (hits[{&l, g}] > 0) continue;
      const auto& n = l.names[g];
      std::string what = n.file.empty() ? n.glob : n.file + ":" + n.glob;
      problems.push_back(l.kind == Kind::Unsafe
                             ? "no 'unsafe' entry names " + what + " (" + where(l) + ")"
                             : "no reported symbol matches " + what + " (" + where(l) + ")");
    }
  }
  return problems;
}

}  // namespace ls::difftest
