// How JS model handles map to native Models, for other binding files: a feature that runs the model in its
// own job (e.g. generate_binding.cc's decoding) takes the Model's handle from JS (lib/native/model.ts
// NativeModelHandle, Model's internal handle) and calls the core on what UnwrapModel returns. Hold the
// shared_ptr for the job's lifetime. (Streaming calibration batches into a correlation accumulator needs no
// feature of its own: modelForward takes the accumulator, see correlation_handle.h.)
#pragma once
#include <napi.h>

#include <memory>

#include "core/model/weights.h"

namespace ffm::binding {

// Throws a JS error (code INVALID_ARGUMENT) if v is not a live model handle.
std::shared_ptr<const model::Model> UnwrapModel(const Napi::Value& v);
Napi::Value WrapModel(Napi::Env env, std::shared_ptr<const model::Model> m);

}  // namespace ffm::binding
