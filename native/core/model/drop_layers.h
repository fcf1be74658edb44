// Models with whole layers removed: the drop-layers baseline (and any "shallower model" experiment) runs
// as a view that shares every remaining tensor with its parent. Layer indices after the removed run shift
// down, so the view is an ordinary model of spec.layers − removed layers: the forward pass, the KV-cache
// decoder and prefix reuse need nothing special.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "core/model/weights.h"

namespace ffm::model {

// A view of `base` without the listed layers (any order, no repeats, each < base->spec.layers, at least one
// layer left). Throws ffm::Error INVALID_ARGUMENT otherwise.
std::shared_ptr<const Model> without_layers(const std::shared_ptr<const Model>& base, const std::vector<size_t>& drop);

// Parameters stored for one layer (attention, norms, FF, cross-attention), each distinct buffer counted once
// within the layer; what removing that layer saves.
size_t layer_params(const Model& m, size_t layer);

}  // namespace ffm::model
