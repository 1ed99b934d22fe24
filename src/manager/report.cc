// The manager's one printer of outcomes (see report.h).
#include "manager/report.h"

namespace ls::manager {

void Report::store(Json entry, const std::string& line) {
  if (ctx_.json) store_.push_back(std::move(entry));
  else fmt::print("{}\n", line);
}

void Report::target(Json entry, const std::string& line) {
  if (ctx_.json) targets_.push_back(std::move(entry));
  else fmt::print("{}\n", line);
}

void Report::finish(const std::string& root, Exit rc) const {
  if (!ctx_.json) return;
  Json doc{{"command", command_}, {"root", root}, {"exit", static_cast<int>(rc)}, {"store", store_},
           {"targets", targets_}};
  fmt::print("{}\n", doc.dump(2, ' ', false, Json::error_handler_t::replace));
}

}  // namespace ls::manager
