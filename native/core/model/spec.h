// What kind of transformer a checkpoint holds, as plain data. The forward pass (model/forward.cc) reads only
// this and the weights; the TS family table (lib/model/families.ts) fills it from config.json. A new decoder
// family that reuses these options (Mistral, Qwen2, OLMo, …) needs a table entry, not code here.
#pragma once
#include <cstddef>
#include <string>

#include "core/nn/ops.h"

namespace ffm::model {

enum class NormKind { LayerNorm, RMSNorm };
// Where the block normalises: pre-norm (GPT-2, LLaMA, ViT: x + f(norm(x))) or post-norm (BERT, Marian:
// norm(x + f(x))).
enum class NormPlacement { Pre, Post };
// How positions enter: added learned table (GPT-2, ViT, BERT), rotary on q/k (LLaMA), added sinusoidal
// table (Marian: plugs in at embed()), or none.
enum class PositionKind { None, Learned, Rotary, Sinusoidal };

struct ModelSpec {
  std::string family;        // config.json model_type, for messages
  size_t layers = 0;         // blocks in the stack
  size_t d_model = 0;        // residual width
  size_t n_heads = 0;        // query heads
  size_t n_kv_heads = 0;     // key/value heads (== n_heads for MHA; fewer for GQA)
  size_t head_dim = 0;       // width of one head (d_model / n_heads unless the config says otherwise)
  size_t d_ff = 0;           // FF hidden width
  size_t vocab = 0;          // rows of the token embedding / LM head
  size_t max_positions = 0;  // longest sequence the position table allows (learned positions)
  NormKind norm = NormKind::LayerNorm;
  NormPlacement placement = NormPlacement::Pre;
  float norm_eps = 1e-5f;
  bool final_norm = true;    // a norm after the last block (ln_f / model.norm)
  PositionKind positions = PositionKind::Learned;
  float rope_theta = 10000.0f;
  size_t rope_dim = 0;       // rotated dims per head (0 = head_dim)
  nn::Activation activation = nn::Activation::GeluNew;
  bool gated_ff = false;     // SwiGLU-style: act(x·W_gateᵀ) ⊙ (x·W_inᵀ)
  bool causal = true;        // decoder self-attention; encoders use false + the padding mask
  float embed_scale = 1.0f;  // token embeddings are multiplied by this (Marian: sqrt(d_model))
  bool cross_attention = false;  // decoder blocks of encoder–decoder models (not implemented yet: typed error)
  size_t qkv_width() const { return (n_heads + 2 * n_kv_heads) * head_dim; }
};

}  // namespace ffm::model
