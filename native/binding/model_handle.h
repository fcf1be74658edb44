// Shared by binding files that take native model handles (made by model_binding.cc's modelCreate).
#pragma once
#include <napi.h>

#include <memory>

#include "core/model/weights.h"

namespace ffm::binding {

// The model behind a JS handle; throws a JS error (INVALID_ARGUMENT) for anything else or a disposed model.
std::shared_ptr<const model::Model> UnwrapModel(const Napi::Value& v);

}  // namespace ffm::binding
