// A model's weights in native memory, canonical Linear layout [out, in], one shared buffer per tensor.
//
// Every tensor is a shared_ptr, so copying a Model copies pointers, not weights: a *view* of a model shares
// every tensor with its parent and overrides the FF of some layers (how merged candidates are evaluated
// without copying the model), and ties are the same buffer in two slots (tied LM head, a merged FF used by
// k layers). Weights are immutable once built, so any number of forward jobs may read one Model at once.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/model/spec.h"

namespace ffm::model {

using Buffer = std::shared_ptr<const std::vector<float>>;

struct Tensor {
  Buffer buf;
  const float* data() const { return buf ? buf->data() : nullptr; }
  size_t size() const { return buf ? buf->size() : 0; }
  explicit operator bool() const { return bool(buf); }
};

// The FF sublayer in ffmerge's canonical layout (see lib/model/ff-tensors.ts).
struct FFWeights {
  Tensor w_in;    // [d_ff, d]   output = the FF pre-activation (the merge's feature)
  Tensor b_in;    // [d_ff] or empty
  Tensor w_gate;  // [d_ff, d]   gated FFs only
  Tensor b_gate;  // [d_ff] or empty
  Tensor w_out;   // [d, d_ff]
  Tensor b_out;   // [d] or empty
};

struct LayerWeights {
  Tensor norm1_w, norm1_b;  // before attention (pre-norm) / after it (post-norm)
  Tensor qkv_w, qkv_b;      // fused [q; k; v] projection [(n_heads + 2·n_kv_heads)·head_dim, d]
  Tensor o_w, o_b;          // attention output [d, n_heads·head_dim]
  Tensor norm2_w, norm2_b;  // around the FF
  std::shared_ptr<const FFWeights> ff;
  // Cross-attention slot (encoder–decoder decoders): norm, q from the decoder, fused kv from the encoder,
  // output projection. Empty for decoder-only and encoder models.
  Tensor xnorm_w, xnorm_b, xq_w, xq_b, xkv_w, xkv_b, xo_w, xo_b;
};

struct ModelWeights {
  Tensor tok_emb;                   // [vocab, d]
  Tensor pos_emb;                   // [max_positions, d] (learned positions only)
  Tensor final_norm_w, final_norm_b;
  Tensor lm_head_w, lm_head_b;      // [vocab, d]; tied = the same buffer as tok_emb
  std::vector<LayerWeights> layers;
};

struct Model {
  ModelSpec spec;
  ModelWeights w;
};

// Builds a Model from named tensors (slot names as in model_binding: "tok_emb", "layers.3.qkv_w",
// "layers.3.ff.w_in", …). Checks every size against the spec; throws ffm::Error SHAPE_MISMATCH /
// TENSOR_NOT_FOUND / INVALID_CONFIG naming the slot. An absent "lm_head_w" ties the head to tok_emb.
Model build_model(const ModelSpec& spec, const std::map<std::string, Buffer>& tensors);

// Checks one FF against the spec (the same checks build_model does for a layer's FF).
void validate_ff(const ModelSpec& spec, const FFWeights& ff, const std::string& where);

// A view of `base` whose layers in `overrides` use the given FFs (shared pointers stay shared).
std::shared_ptr<const Model> with_ff(const std::shared_ptr<const Model>& base,
                                     const std::vector<std::pair<size_t, std::shared_ptr<const FFWeights>>>& overrides);

}  // namespace ffm::model
