// The one parser of a JS ModelSpec (lib/model/spec.ts) into model::ModelSpec. The TS side sends a complete,
// validated spec (lib/model/validate-spec.ts), so every field is required here and nothing has a default:
// a missing or ill-typed field throws a JS error with code INVALID_ARGUMENT naming it.
#pragma once
#include <napi.h>

#include "core/model/spec.h"

namespace ffm::binding {

model::ModelSpec ParseModelSpec(const Napi::Object& o);

}  // namespace ffm::binding
