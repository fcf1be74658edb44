#include "core/model/correlation_capture.h"

#include <string>

#include "core/error.h"

namespace ffm::model {

std::vector<size_t> CorrelationCapture::used_layers(const CorrelationAccumulator& acc) {
  std::vector<size_t> out;
  for (size_t l = 0; l < acc.dims().size(); ++l)
    if (acc.used(l)) out.push_back(l);
  return out;
}

void CorrelationCapture::check_shape(const CorrelationAccumulator& acc, const ModelSpec& spec) {
  const auto& dims = acc.dims();
  if (dims.size() != spec.layers)
    throw Error("SHAPE_MISMATCH", "the correlation accumulator has " + std::to_string(dims.size()) +
                                      " layers but the stack it would collect from has " +
                                      std::to_string(spec.layers));
  for (size_t l = 0; l < dims.size(); ++l)
    if (dims[l] != spec.d_ff)
      throw Error("SHAPE_MISMATCH", "the correlation accumulator's layer " + std::to_string(l) + " is " +
                                        std::to_string(dims[l]) + " units wide but the stack's FF hidden width is " +
                                        std::to_string(spec.d_ff));
}

CorrelationCapture::CorrelationCapture(CorrelationAccumulator& acc, const ModelSpec& spec,
                                       const std::vector<size_t>& capture_layers)
    : acc_(acc), slot_(acc.dims().size(), kNone) {
  check_shape(acc, spec);
  for (size_t i = capture_layers.size(); i-- > 0;)  // backwards: a layer listed twice maps to its first slot
    if (capture_layers[i] < slot_.size()) slot_[capture_layers[i]] = i;
  for (size_t l = 0; l < slot_.size(); ++l)
    if (acc.used(l) && slot_[l] == kNone)
      throw Error("INVALID_ARGUMENT", "the forward pass does not capture layer " + std::to_string(l) +
                                          ", which the correlation accumulator uses");
}

void CorrelationCapture::on_batch(JobControl& ctl, const std::vector<const float*>& per_layer_preact, size_t rows) {
  // Empty capture buffers may have null data(), which add() would take for a missing layer.
  if (rows == 0) return;
  std::vector<const float*> layers(slot_.size(), nullptr);
  for (size_t l = 0; l < slot_.size(); ++l)
    if (slot_[l] != kNone) {
      if (slot_[l] >= per_layer_preact.size())
        throw Error("INVALID_STATE", "the forward pass delivered fewer captured layers than it was asked for");
      layers[l] = per_layer_preact[slot_[l]];
    }
  JobControl quiet = ctl.nested();
  acc_.add(quiet, layers, rows);
}

}  // namespace ffm::model
