#include "core/model/drop_layers.h"

#include <set>
#include <string>

#include "core/error.h"
#include "core/model/stream.h"

namespace ffm::model {

std::shared_ptr<const Model> without_layers(const std::shared_ptr<const Model>& base, const std::vector<size_t>& drop) {
  const size_t L = base->spec.layers;
  std::set<size_t> gone;
  for (size_t l : drop) {
    if (l >= L)
      throw Error("INVALID_ARGUMENT", "cannot remove layer " + std::to_string(l) + ": the model has layers 0-" +
                                          std::to_string(L - 1));
    if (!gone.insert(l).second) throw Error("INVALID_ARGUMENT", "layer " + std::to_string(l) + " is listed twice");
  }
  if (gone.size() >= L) throw Error("INVALID_ARGUMENT", "removing every layer leaves no model");
  auto view = std::make_shared<Model>();
  view->spec = base->spec;
  view->w = base->w;  // copies pointers only
  view->stream = base->stream;
  view->w.layers.clear();
  // the per-layer attention windows move down with their layers (Qwen2's max_window_layers gives layers
  // different windows): indexed by the view's own layer numbers, as a checkpoint of the kept layers would be
  view->spec.sliding_window.clear();
  for (size_t l = 0; l < L; ++l)
    if (!gone.count(l)) {
      view->w.layers.push_back(base->w.layers[l]);
      if (l < base->spec.sliding_window.size()) view->spec.sliding_window.push_back(base->spec.sliding_window[l]);
    }
  view->spec.layers = view->w.layers.size();
  return view;
}

size_t layer_params(const Model& m, size_t layer) {
  if (layer >= m.spec.layers) throw Error("INVALID_ARGUMENT", "layer " + std::to_string(layer) + " is out of range");
  const LayerWeights& w = m.w.layers[layer];
  std::set<const void*> seen;
  size_t n = 0;
  // A streamed layer is counted from what its files hold (nothing is read), its FF from the override if set.
  if (w.streamed >= 0 && m.stream) n += m.stream->stored_elements(size_t(w.streamed), /*with_ff=*/!w.ff);
  auto add = [&](const Tensor& t) {
    if (t && seen.insert(t.id()).second) n += t.size();
  };
  for (const Tensor* t : {&w.norm1_w, &w.norm1_b, &w.qkv_w, &w.qkv_b, &w.q_norm_w, &w.k_norm_w, &w.o_w, &w.o_b, &w.norm2_w, &w.norm2_b,
                          &w.xnorm_w, &w.xnorm_b, &w.xq_w, &w.xq_b, &w.xkv_w, &w.xkv_b, &w.xo_w, &w.xo_b})
    add(*t);
  if (w.ff) {
    add(w.ff->w_in);
    add(w.ff->b_in);
    add(w.ff->w_gate);
    add(w.ff->b_gate);
    add(w.ff->w_out);
    add(w.ff->b_out);
  }
  return n;
}

}  // namespace ffm::model
