// What kind of transformer a checkpoint holds, as plain data. The forward pass (model/forward.cc) reads only
// this and the weights; the TS architecture descriptions (lib/model/architectures/) fill it from config.json,
// lib/model/validate-spec.ts checks it and native/binding/spec_binding.cc is its only parser. A new decoder
// family that reuses these options (Qwen2, Mistral, Helium, StarCoder2) needs a description file, not code here;
// one with a norm these options lack (OLMo's weightless LayerNorm, Gemma's 1 + w) needs code.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "core/nn/ops.h"

namespace ffm::model {

enum class NormKind { LayerNorm, RMSNorm };
// Where the block normalises: pre-norm (GPT-2, LLaMA, ViT: x + f(norm(x))) or post-norm (BERT, Marian:
// norm(x + f(x))).
enum class NormPlacement { Pre, Post };
// How positions enter: added learned table (GPT-2, ViT, BERT), rotary on q/k (LLaMA), added sinusoidal
// table (Marian: plugs in at embed()), or none.
enum class PositionKind { None, Learned, Rotary, Sinusoidal };
// What enters the stack: token ids (tok_emb rows), or images cut into patches by a conv with kernel = stride =
// patch (ViT: the patch vectors go through patch_w, a CLS token is put first; seq = 1 + patches).
enum class InputKind { Tokens, Patches };
// What Output::Logits means: an LM head on every position ([batch, seq, vocab]) or a classifier on the first
// position (ViT / BERT CLS: [batch, num_labels], optionally after BERT's tanh pooler), or none (BertModel,
// encoders of encoder–decoder models: hidden states only).
enum class HeadKind { LMHead, Classifier, None };

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
  nn::RopeScaling rope_scaling;  // config.json rope_scaling (none, linear, llama3)
  size_t rope_dim = 0;       // rotated dims per head (0 = head_dim)
  // Qwen3: RMSNorm (eps norm_eps) over each head of q and of k, after the projection and before RoPE; weights
  // layers.N.q_norm_w / k_norm_w [head_dim].
  bool qk_norm = false;
  nn::Activation activation = nn::Activation::GeluNew;
  bool gated_ff = false;     // SwiGLU-style: act(x·W_gateᵀ) ⊙ (x·W_inᵀ)
  bool causal = true;        // decoder self-attention; encoders use false + the padding mask
  // Per layer: 0 = full attention, w > 0 = sliding window (query at position p sees key j iff p − j < w;
  // Mistral, Qwen2). Empty = full attention everywhere; else one entry per layer (checked by build_model).
  std::vector<size_t> sliding_window;
  float embed_scale = 1.0f;  // token embeddings are multiplied by this (Marian: sqrt(d_model))
  // Decoder blocks of encoder–decoder models (Marian): a cross-attention sublayer between self-attention and
  // the FF, queries from the decoder, keys/values from the encoder states (ForwardInput::encoder_hidden).
  bool cross_attention = false;
  // Input side (ViT): images [channels, image_h, image_w] cut into patch×patch squares.
  InputKind input = InputKind::Tokens;
  size_t channels = 0, image_h = 0, image_w = 0, patch = 0;
  // BERT embeddings: token-type table (0 = none) and a norm after summing the embeddings.
  size_t type_vocab = 0;
  bool embed_norm = false;
  // Output side.
  HeadKind head = HeadKind::LMHead;
  size_t num_labels = 0;  // Classifier head
  bool pooler = false;    // BERT: tanh(pooler · h_CLS + b) before the classifier
  size_t patches() const { return patch ? (image_h / patch) * (image_w / patch) : 0; }
  size_t patch_dim() const { return channels * patch * patch; }
  size_t qkv_width() const { return (n_heads + 2 * n_kv_heads) * head_dim; }
  size_t window(size_t layer) const { return layer < sliding_window.size() ? sliding_window[layer] : 0; }
};

}  // namespace ffm::model
