// A model tensor's floats moved into native memory in steps that each hold the host's event loop only
// briefly (staged_floats.cc says how), for the copies a model view makes (modelWithFF).
#pragma once
#include <napi.h>

#include "core/model/weights.h"

namespace ffm::binding {

// The buffer of a StagedFloats object, shared (no copy): from then on the object refuses writes, so what a
// model holds never changes. nullptr when v is not a StagedFloats; INVALID_STATE for one not yet filled or
// disposed.
model::Buffer SharedStaged(const Napi::Value& v);

// The floats a job reads from argument `v`: a StagedFloats' buffer, shared (SharedStaged), or nullptr for a
// Float32Array, which the caller copies (CopyTyped) once every argument is checked. *length is either's length.
model::Buffer StagedOrLength(const Napi::Value& v, const char* key, size_t* length);

}  // namespace ffm::binding
