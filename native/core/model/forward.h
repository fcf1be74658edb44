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

// Keys/values of the positions already run, for incremental decoding (greedy search): a forward call with a
// cache runs only the new positions, appends their self-attention keys/values, and reads earlier ones from
// here. Cross-attention keys/values of the encoder states are computed on the first call and kept.
// Decoder prompts are unpadded (keys in the cache are all valid).
struct KVCache {
  size_t batch = 0, capacity = 0, length = 0;  // positions cached so far (per sequence)
  std::vector<std::vector<float>> k, v;        // per layer [batch, capacity, n_kv_heads·head_dim]
  std::vector<std::vector<float>> xk, xv;      // per layer [batch, encoder_seq, n_kv_heads·head_dim]
  bool cross_ready = false;
  KVCache() = default;
  KVCache(size_t layers, size_t batch_, size_t capacity_, size_t kv_width)
      : batch(batch_), capacity(capacity_), k(layers), v(layers), xk(layers), xv(layers) {
    for (size_t l = 0; l < layers; ++l) {
      k[l].resize(batch * capacity * kv_width);
      v[l].resize(batch * capacity * kv_width);
    }
  }
};

struct ForwardInput {
  const int32_t* ids = nullptr;        // [batch, seq] (needed unless starting from hidden with Output::Hidden)
  size_t batch = 0, seq = 0;
  const uint8_t* attention_mask = nullptr;  // [batch, seq], 1 = real token, 0 = padding; nullptr = all real
  const float* hidden = nullptr;       // [batch, seq, d]: the state entering from_layer (required if > 0)
  const float* pixels = nullptr;       // InputKind::Patches: [batch, channels, image_h, image_w] (seq = 1 + patches)
  const int32_t* token_type_ids = nullptr;  // [batch, seq] when the model has token types (nullptr = all 0)
  // Encoder–decoder: the encoder's output states [batch, encoder_seq, d] and their padding mask.
  const float* encoder_hidden = nullptr;
  size_t encoder_seq = 0;
  const uint8_t* encoder_mask = nullptr;
  KVCache* cache = nullptr;            // incremental decoding (positions continue at cache->length)
};

struct ForwardOptions {
  Output output = Output::Logits;
  size_t from_layer = 0;
  size_t to_layer = SIZE_MAX;          // exclusive; SIZE_MAX = all layers
  std::vector<size_t> capture_layers;  // layers whose FF pre-activation goes to `capture`
  // Layers whose FF input (the state the first FF matrix reads, after the norm in pre-norm stacks) is returned
  // in ForwardResult::ff_inputs: the training-free fits need X itself, and the pre-activation only gives it
  // back through a pseudo-inverse of W_in (tens of seconds and d·d_ff floats per layer at 7B width).
  std::vector<size_t> input_layers;
  // Layers whose FF output (what the FF sublayer adds to the residual stream, before any post-norm) is returned
  // in ForwardResult::ff_outputs: on the base model these are the targets of the training-free fits, which
  // otherwise recompute them from float32 copies of every window layer's FF.
  std::vector<size_t> output_layers;
  const uint8_t* feature_mask = nullptr;  // [batch, seq], which positions are features (nullptr = attention_mask)
  FFCapture* capture = nullptr;
};

struct ForwardResult {
  std::vector<float> hidden;  // Output::Hidden: [batch, seq, d] after to_layer (before the final norm)
  std::vector<float> logits;  // Output::Logits: [batch, seq, vocab] (LM head) or [batch, num_labels] (classifier)
  // Output::Nll: [batch, seq-1]; entry (b, t) = −log p(ids[b,t+1] | ids[b,≤t]); 0 where position t+1 is
  // padding. nll_count = number of scored positions, nll_sum their sum (in double).
  std::vector<float> nll;
  size_t nll_count = 0;
  double nll_sum = 0;
  // ff_inputs[i]: [feature rows, d] FF inputs of input_layers[i], the feature positions in (batch, position) order.
  std::vector<std::vector<float>> ff_inputs;
  // ff_outputs[i]: [feature rows, d] FF outputs of output_layers[i], in the same order.
  std::vector<std::vector<float>> ff_outputs;
};

ForwardResult forward(JobControl& ctl, const Model& m, const ForwardInput& in, const ForwardOptions& opts);

}  // namespace ffm::model
