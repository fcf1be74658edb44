// The forward pass of a transformer stack described by ModelSpec + ModelWeights: batched, causal or padded,
// fp32, on the pool. It can run any range of layers, start from given hidden states, and end in hidden
// states, logits, or per-position NLL (computed a row block at a time, never holding batch·seq·vocab).
#pragma once
#include <cstdint>
#include <vector>

#include "core/job.h"
#include "core/model/weights.h"

namespace ffm::model {

// Receives the FF pre-activations (output of the first FF matrix, before the nonlinearity) of every
// captured layer, once per forward call after all of them ran. Rows are the positions whose feature mask is
// 1, compacted in (batch, position) order; per_layer_preact[i] is [rows, d_ff] for capture_layers[i].
struct FFCapture {
  virtual ~FFCapture() = default;
  virtual void on_batch(JobControl& ctl, const std::vector<const float*>& per_layer_preact, size_t rows) = 0;
};

enum class Output { Hidden, Logits, Nll };

struct ForwardInput {
  const int32_t* ids = nullptr;        // [batch, seq] (needed unless starting from hidden with Output::Hidden)
  size_t batch = 0, seq = 0;
  const uint8_t* attention_mask = nullptr;  // [batch, seq], 1 = real token, 0 = padding; nullptr = all real
  const float* hidden = nullptr;       // [batch, seq, d]: the state entering from_layer (required if > 0)
};

struct ForwardOptions {
  Output output = Output::Logits;
  size_t from_layer = 0;
  size_t to_layer = SIZE_MAX;          // exclusive; SIZE_MAX = all layers
  std::vector<size_t> capture_layers;  // layers whose FF pre-activation goes to `capture`
  const uint8_t* feature_mask = nullptr;  // [batch, seq], which positions are features (nullptr = attention_mask)
  FFCapture* capture = nullptr;
};

struct ForwardResult {
  std::vector<float> hidden;  // Output::Hidden: [batch, seq, d] after to_layer (before the final norm)
  std::vector<float> logits;  // Output::Logits: [batch, seq, vocab]
  // Output::Nll: [batch, seq-1]; entry (b, t) = −log p(ids[b,t+1] | ids[b,≤t]); 0 where position t+1 is
  // padding. nll_count = number of scored positions, nll_sum their sum (in double).
  std::vector<float> nll;
  size_t nll_count = 0;
  double nll_sum = 0;
};

ForwardResult forward(JobControl& ctl, const Model& m, const ForwardInput& in, const ForwardOptions& opts);

}  // namespace ffm::model
