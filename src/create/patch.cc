// Reading and applying the source patch (see patch.h).
#include "create/patch.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "base/subprocess.h"

namespace fs = std::filesystem;

namespace ls::create {
namespace {

std::string strip_component(std::string p) {
  if (p.size() >= 2 && p.front() == '"' && p.back() == '"') p = p.substr(1, p.size() - 2);
  auto slash = p.find('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Why GNU patch refused, one line per file and hunk, from its own output.
std::string explain_patch_failure(const std::string& output) {
  std::istringstream in(output);
  std::string line, file;
  std::vector<std::string> reasons;
  static const std::regex kFile(R"(^(checking|patching) file '?([^']*)'?$)");
  static const std::regex kHunk(R"(^Hunk #(\d+) FAILED at (\d+)\.?)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, kFile)) file = m[2];
    else if (std::regex_search(line, m, kHunk))
      reasons.push_back(fmt::format("{}: hunk #{} FAILED at line {}", file, m[1].str(), m[2].str()));
    else if (line.find("Reversed (or previously applied) patch detected") != std::string::npos)
      reasons.push_back(fmt::format("{}: already applied (patch detected a reversed patch)", file));
    else if (line.find("can't find file to patch") != std::string::npos)
      reasons.push_back("a file to patch does not exist (" + line + ")");
    else if (line.find("No such file") != std::string::npos || line.find("not found") != std::string::npos)
      reasons.push_back(file.empty() ? line : file + ": " + line);
  }
  std::string out;
  for (const auto& r : reasons) out += "  " + r + "\n";
  return out;
}

}  // namespace

Patch read_patch(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read the patch", path);
  return parse_patch(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()), path);
}

Patch parse_patch(std::string text, const std::string& path) {
  Patch p;
  p.path = path;
  p.name = fs::path(path).filename().string();
  p.text = std::move(text);
  std::istringstream lines(p.text);
  std::string line;
  auto add = [&](const std::string& f) {
    if (f.empty() || f == "dev/null" || f == "/dev/null") return;
    if (std::find(p.files.begin(), p.files.end(), f) == p.files.end()) p.files.push_back(f);
  };
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("--- ", 0) == 0 || line.rfind("+++ ", 0) == 0) {
      std::string name = line.substr(4, line.find('\t') == std::string::npos ? std::string::npos : line.find('\t') - 4);
      if (name == "/dev/null") continue;
      add(strip_component(name));
    } else if (line.rfind("rename from ", 0) == 0) {
      add(line.substr(12));
    } else if (line.rfind("rename to ", 0) == 0) {
      add(line.substr(10));
    }
  }
  if (p.files.empty()) fail("{}: no file to patch found (is it a unified diff?)", path);
  for (const auto& f : p.files) {
    // `..` alone, `a/../..`: what the path means once resolved, not how it is spelled.
    fs::path normal = fs::path(f).lexically_normal();
    if (f.front() == '/' || (!normal.empty() && *normal.begin() == ".."))
      fail("{}: patches {}, outside the source tree", path, f);
  }
  return p;
}

void check_patch(Context& ctx, const std::string& source, const Patch& patch) {
  RunOptions opts;
  opts.cwd = source;
  RunResult r = run({"patch", "-p1", "--dry-run", "--batch", "--forward", "-i", patch.path}, opts);
  if (r.status != 0) {
    std::string quoted;
    std::istringstream in(r.output);
    for (std::string line; std::getline(in, line);) quoted += "    | " + line + "\n";
    fail("{}: does not apply to {}:\n{}  patch --dry-run said:\n{}", patch.path, source,
         explain_patch_failure(r.output), quoted);
  }
  if (r.output.find("with fuzz") != std::string::npos)
    ctx.warn(fmt::format("{} applies only with fuzz; check the result:\n{}", patch.name, r.output));
}

void apply_patch(const std::string& source, const Patch& patch) {
  RunOptions opts;
  opts.cwd = source;
  RunResult r = run({"patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "--reject-file=-",
                     "-i", patch.path}, opts);
  if (r.status != 0) fail("{}: applying to {} failed after a clean dry run:\n{}", patch.path, source, r.output);
}

}  // namespace ls::create
