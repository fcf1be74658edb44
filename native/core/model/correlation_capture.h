// Streams a forward pass's FF pre-activations straight into a CorrelationAccumulator (the calibration pass):
// the captured rows go from the forward's capture buffers to the accumulator's block products with no other
// copy. Plain C++, so the binding runs it inside the forward job's worker and the ctest harness tests it.
#pragma once
#include <cstddef>
#include <vector>

#include "core/correlation.h"
#include "core/model/forward.h"

namespace ffm::model {

class CorrelationCapture : public FFCapture {
 public:
  // The accumulator is indexed by the layers of the stack `spec` describes: acc.dims() must have
  // spec.layers entries, each spec.d_ff (SHAPE_MISMATCH otherwise, since the forward hands it rows × d_ff
  // per layer). capture_layers is the forward's ForwardOptions::capture_layers, in that order: it must hold
  // every layer the accumulator uses (INVALID_ARGUMENT otherwise); other layers in it are ignored, so one
  // pass can also capture layers for another consumer. The accumulator must outlive this object.
  CorrelationCapture(CorrelationAccumulator& acc, const ModelSpec& spec, const std::vector<size_t>& capture_layers);

  // The layers the accumulator uses, ascending: what capture_layers needs to contain.
  static std::vector<size_t> used_layers(const CorrelationAccumulator& acc);
  // Throws SHAPE_MISMATCH unless the accumulator's layers are the stack's (count and widths).
  static void check_shape(const CorrelationAccumulator& acc, const ModelSpec& spec);

  // One add() per forward call. A batch with no feature rows (all padding) adds nothing. The accumulation's
  // own block progress is not reported: the forward's progress counts layers and would appear to restart.
  // Non-finite activations reject the batch (NON_FINITE_ACTIVATIONS) and a cancel stops it, as in add().
  void on_batch(JobControl& ctl, const std::vector<const float*>& per_layer_preact, size_t rows) override;

 private:
  static constexpr size_t kNone = static_cast<size_t>(-1);
  CorrelationAccumulator& acc_;
  std::vector<size_t> slot_;  // per accumulator layer: its index in capture_layers, or kNone if unused
};

}  // namespace ffm::model
