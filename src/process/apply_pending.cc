// Temporary: run_apply joins the build once the matcher and loader land.
#include "process/apply.h"

namespace ls::proc {
Exit run_apply(Context&, const ApplyOptions&) { fail("apply: not available in this build yet"); }
}  // namespace ls::proc
