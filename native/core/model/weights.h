// A model's weights in native memory, canonical Linear layout [out, in], one shared buffer per tensor.
// Matrices a checkpoint stores as F16/BF16 may stay 16-bit (half the memory; widened to float32 inside the
// GEMM and per row for embedding lookups); everything else, and every tensor given as float32, is float32.
//
// Every tensor is a shared_ptr, so copying a Model copies pointers, not weights: a *view* of a model shares
// every tensor with its parent and overrides the FF of some layers (how merged candidates are evaluated
// without copying the model), and ties are the same buffer in two slots (tied LM head, a merged FF used by
// k layers). Weights are immutable once built, so any number of forward jobs may read one Model at once.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/job.h"
#include "core/model/spec.h"
#include "core/nn/ops.h"

namespace ffm::model {

using Buffer = std::shared_ptr<const std::vector<float>>;
// 16-bit elements, uninitialised on allocation (the loader fills them straight from the file).
using HalfBuffer = std::shared_ptr<const uint16_t[]>;

enum class DType : uint8_t { F32, F16, BF16 };

struct Tensor {
  Buffer buf;             // float32 data (dtype F32)
  HalfBuffer half;        // 16-bit data (dtype F16 / BF16)
  size_t half_size = 0;   // elements of `half`
  DType dtype = DType::F32;

  static Tensor f32(Buffer b) {
    Tensor t;
    t.buf = std::move(b);
    return t;
  }
  static Tensor f16(HalfBuffer h, size_t n, Half type) {
    Tensor t;
    t.half = std::move(h);
    t.half_size = n;
    t.dtype = type == Half::BF16 ? DType::BF16 : DType::F16;
    return t;
  }

  bool is_half() const { return bool(half); }
  Half half_type() const { return dtype == DType::BF16 ? Half::BF16 : Half::F16; }
  // float32 data; nullptr for a 16-bit tensor (only matrices used through weight(), read_f32() or as_f32() may be one).
  const float* data() const { return buf ? buf->data() : nullptr; }
  size_t size() const { return buf ? buf->size() : half_size; }
  explicit operator bool() const { return bool(buf) || bool(half); }
  // Identity of the storage: two slots holding one buffer (a tie) compare equal.
  const void* id() const { return buf ? static_cast<const void*>(buf.get()) : static_cast<const void*>(half.get()); }
  // As a Linear weight operand (either dtype).
  nn::Weight weight() const { return half ? nn::Weight(half.get(), half_type()) : nn::Weight(data()); }
  // dst[0..n) = elements [offset, offset + n) as float32 (exact: widening only).
  void read_f32(size_t offset, size_t n, float* dst) const;
  // The whole tensor as float32 (a copy for a 16-bit tensor, the same buffer for a float32 one).
  Buffer as_f32() const;
};

// The FF sublayer in ffmerge's canonical layout (see lib/model/architectures/types.ts).
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
  Tensor q_norm_w, k_norm_w;  // [head_dim] per-head RMSNorm of q and k (spec.qk_norm, Qwen3)
  Tensor o_w, o_b;          // attention output [d, n_heads·head_dim]
  Tensor norm2_w, norm2_b;  // around the FF
  std::shared_ptr<const FFWeights> ff;
  // Cross-attention slot (encoder–decoder decoders): norm, q from the decoder, fused kv from the encoder,
  // output projection. Empty for decoder-only and encoder models.
  Tensor xnorm_w, xnorm_b, xq_w, xq_b, xkv_w, xkv_b, xo_w, xo_b;
  // Streamed models (see core/model/stream.h): this layer's weights stay on disk and are read from stream
  // layer `streamed` when a pass reaches it; -1 = resident (the tensors above). An `ff` set on a streamed
  // layer overrides the stored FF (a view's merged FF).
  long streamed = -1;
};

struct ModelWeights {
  Tensor tok_emb;                   // [vocab, d] (token input)
  Tensor pos_emb;                   // [max_positions, d] (learned positions only)
  Tensor type_emb;                  // [type_vocab, d] (BERT token types)
  Tensor embed_norm_w, embed_norm_b;  // BERT: norm after the embedding sum
  Tensor patch_w, patch_b;          // [d, channels·patch·patch] conv weight flattened (c, ky, kx); [d]
  Tensor cls_token;                 // [d] (patch input: position 0)
  Tensor pooler_w, pooler_b;        // [d, d], [d] (BERT pooler)
  Tensor classifier_w, classifier_b;  // [num_labels, d], [num_labels] (classifier head)
  Tensor final_norm_w, final_norm_b;
  Tensor lm_head_w, lm_head_b;      // [vocab, d]; tied = the same buffer as tok_emb
  std::vector<LayerWeights> layers;
};

class LayerStream;

struct Model {
  ModelSpec spec;
  ModelWeights w;
  // Set when the layers are streamed from disk (shared by every view of the model).
  std::shared_ptr<LayerStream> stream;
};

// Layer l's weights, valid while the returned pointer lives. Resident layers: a non-owning pointer into
// m.w.layers. Streamed layers: read from disk on first use (silently, on ctl's pool) and freed when the last
// pass using them lets go, so a pass over the stack holds about one layer at a time.
std::shared_ptr<const LayerWeights> layer_weights(JobControl& ctl, const Model& m, size_t l);

// The model's spec and top-level tensors (embeddings, norms, heads), checked as build_model checks them, with
// m.w.layers empty.
Model build_model_top(const ModelSpec& spec, const std::map<std::string, Tensor>& tensors);
// The weights of one layer from named tensors ("layers.<l>.qkv_w", …), checked as build_model checks them.
LayerWeights build_layer(const ModelSpec& spec, size_t l, const std::map<std::string, Tensor>& tensors);

// Builds a Model from named tensors (slot names as in model_binding: "tok_emb", "layers.3.qkv_w",
// "layers.3.ff.w_in", …). Checks every size against the spec; throws ffm::Error SHAPE_MISMATCH /
// TENSOR_NOT_FOUND / INVALID_CONFIG naming the slot. An absent "lm_head_w" ties the head to tok_emb.
// Matrices may be 16-bit Tensors in the slots may_stay_half() names; a 16-bit tensor in another slot (a norm,
// a bias, a position table) is widened to float32 here.
Model build_model(const ModelSpec& spec, const std::map<std::string, Buffer>& tensors);
Model build_model(const ModelSpec& spec, const std::map<std::string, Tensor>& tensors);

// Whether a slot's consumer reads it through nn::linear (or as embedding rows), so it may stay 16-bit.
bool may_stay_half(const std::string& slot);

// Checks one FF against the spec (the same checks build_model does for a layer's FF).
void validate_ff(const ModelSpec& spec, const FFWeights& ff, const std::string& where);

// A view of `base` whose layers in `overrides` use the given FFs (shared pointers stay shared).
std::shared_ptr<const Model> with_ff(const std::shared_ptr<const Model>& base,
                                     const std::vector<std::pair<size_t, std::shared_ptr<const FFWeights>>>& overrides);

}  // namespace ffm::model
