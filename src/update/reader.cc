// placeholder until the update reader lands: written by the create work
#include "update/update.h"

namespace ls::update {
Exit run_info(Context&, const std::string&) { fail("info: not implemented yet"); }
}  // namespace ls::update
