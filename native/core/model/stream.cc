#include "core/model/stream.h"

#include "core/error.h"

namespace ffm::model {

LayerStream::LayerStream(ModelSpec spec, std::vector<LoadPlan> layer_plans)
    : spec_(std::move(spec)), plans_(std::move(layer_plans)), held_(plans_.size()) {
  if (plans_.size() != spec_.layers)
    throw Error("INVALID_ARGUMENT", "layer stream: " + std::to_string(plans_.size()) + " layer plans for a stack of " +
                                        std::to_string(spec_.layers) + " layers");
  for (size_t l = 0; l < plans_.size(); ++l) mu_.push_back(std::make_unique<std::mutex>());
}

uint64_t LayerStream::stored_bytes(size_t l) const {
  uint64_t n = 0;
  for (const auto& s : plans_.at(l).slots)
    for (const auto& p : s.pieces) n += p.length;
  return n;
}

size_t LayerStream::stored_elements(size_t l, bool with_ff) const {
  size_t n = 0;
  for (const auto& s : plans_.at(l).slots) {
    if (!with_ff && s.name.find(".ff.") != std::string::npos) continue;
    for (const auto& p : s.pieces) n += size_t(p.length / stored_size(p.dtype));
  }
  return n;
}

std::shared_ptr<const LayerWeights> LayerStream::acquire(JobControl& ctl, size_t l) {
  if (l >= plans_.size()) throw Error("INVALID_ARGUMENT", "layer " + std::to_string(l) + " is not in the stream");
  std::lock_guard<std::mutex> lock(*mu_[l]);
  if (auto held = held_[l].lock()) return held;
  {
    // drop the previous latest before reading, so at most one spare layer is resident while this one loads
    std::lock_guard<std::mutex> r(recent_mu_);
    recent_.reset();
  }
  // A nested control: the read shares the job's pool and cancel flag but not its progress (the caller's
  // pass reports its own).
  JobControl quiet = ctl.nested();
  auto tensors = load_tensors(quiet, plans_[l]);
  auto layer = std::make_shared<const LayerWeights>(build_layer(spec_, l, tensors));
  held_[l] = layer;
  std::lock_guard<std::mutex> r(recent_mu_);
  recent_ = layer;
  return layer;
}

Model build_streamed_model(const ModelSpec& spec, const std::map<std::string, Tensor>& tensors,
                           std::shared_ptr<LayerStream> stream) {
  // The top-level tensors are checked and placed as for a resident model; every layer points at the stream.
  Model m = build_model_top(spec, tensors);
  m.w.layers.assign(spec.layers, LayerWeights{});
  for (size_t l = 0; l < spec.layers; ++l) m.w.layers[l].streamed = long(l);
  m.stream = std::move(stream);
  return m;
}

Model resident_copy(JobControl& ctl, const Model& m) {
  Model out = m;
  for (size_t l = 0; l < out.w.layers.size(); ++l) {
    if (out.w.layers[l].streamed < 0) continue;
    out.w.layers[l] = *layer_weights(ctl, m, l);  // the tensors are shared pointers: they stay alive in `out`
    out.w.layers[l].streamed = -1;
  }
  out.stream.reset();
  return out;
}

}  // namespace ffm::model
