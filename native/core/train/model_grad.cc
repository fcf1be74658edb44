#include "core/train/model_grad.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/nn/ops.h"
#include "core/thread_pool.h"
#include "core/train/grad_ops.h"

namespace ffm::train {

using model::ModelSpec;
using model::NormKind;
using model::PositionKind;

void check_trainable(const ModelSpec& s) {
  std::string why;
  if (s.input != model::InputKind::Tokens || s.head != model::HeadKind::LMHead) why = "it is not a token-in, LM-head-out model";
  else if (s.placement != model::NormPlacement::Pre) why = "it normalises after each sublayer (post-norm)";
  else if (s.cross_attention) why = "it has cross-attention (encoder–decoder)";
  else if (!s.causal) why = "its attention is not causal";
  else if (s.embed_norm || s.type_vocab) why = "it has BERT-style embeddings";
  else if (s.positions == PositionKind::Sinusoidal) why = "it uses sinusoidal positions";
  if (!why.empty())
    throw Error("UNSUPPORTED_ARCHITECTURE", "fine-tuning covers decoder-only pre-norm language models (gpt2, llama, "
                                            "qwen2, mistral); this " + s.family + " model is not one: " + why);
}

size_t scored_targets(const TokenBatch& b) {
  size_t n = 0;
  for (size_t r = 0; r < b.B * b.T; ++r) n += b.targets[r] >= 0;
  return n;
}

size_t activation_floats_per_sequence(const ModelSpec& s, size_t T) {
  const size_t d = s.d_model, W = s.qkv_width(), qw = s.n_heads * s.head_dim, f = s.d_ff;
  const size_t per_layer = T * (5 * d + W + qw + (s.gated_ff ? 3 : 2) * f) + s.n_heads * T * T;
  return s.layers * per_layer + 2 * T * d;
}

namespace {

void norm_forward(ThreadPool* pool, const ModelSpec& s, const ParamSet& ps, int w, int b, const float* x, float* y,
                  size_t R) {
  if (s.norm == NormKind::LayerNorm) nn::layernorm(pool, x, y, R, s.d_model, ps.w(w), ps.w(b), s.norm_eps);
  else nn::rmsnorm(pool, x, y, R, s.d_model, ps.w(w), s.norm_eps);
}

void norm_backward(ThreadPool* pool, const ModelSpec& s, ParamSet& ps, int w, int b, const float* x, const float* dy,
                   float* dx, size_t R) {
  if (s.norm == NormKind::LayerNorm)
    layernorm_backward(pool, x, dy, R, s.d_model, ps.w(w), s.norm_eps, dx, ps.g(w), ps.g(b));
  else
    rmsnorm_backward(pool, x, dy, R, s.d_model, ps.w(w), s.norm_eps, dx, ps.g(w));
}

}  // namespace

double loss_and_grad(ThreadPool* pool, const ModelSpec& s, ParamSet& ps, const TokenBatch& bt, float grad_scale,
                     bool backward, Activations& A) {
  const size_t B = bt.B, T = bt.T, R = B * T, d = s.d_model, W = s.qkv_width(), hd = s.head_dim;
  const size_t qw = s.n_heads * hd, kw = s.n_kv_heads * hd, f = s.d_ff, L = s.layers;
  const size_t rd = s.rope_dim ? s.rope_dim : hd;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const AttnDims dims{B, T, s.n_heads, s.n_kv_heads, hd};
  if (s.positions == PositionKind::Learned && T > s.max_positions)
    throw Error("SEQUENCE_TOO_LONG", "sequence length " + std::to_string(T) + " is longer than the model's " +
                                         std::to_string(s.max_positions) + " positions");
  for (size_t r = 0; r < R; ++r) {
    if (bt.ids[r] < 0 || size_t(bt.ids[r]) >= s.vocab || bt.targets[r] >= int32_t(s.vocab))
      throw Error("INVALID_ARGUMENT", "token id outside the vocabulary (size " + std::to_string(s.vocab) + ")");
  }

  A.layers.resize(L);
  A.positions.resize(R);
  for (size_t r = 0; r < R; ++r) A.positions[r] = int32_t(r % T);
  std::vector<float> x(R * d), tmp(R * d);

  // ---- forward: embed → blocks → final norm (what forward.cc computes, keeping the intermediates) ----
  const float* te = ps.w(ps.tok_emb);
  const float* pe = ps.w(ps.pos_emb);
  for (size_t r = 0; r < R; ++r) {
    const float* e = te + size_t(bt.ids[r]) * d;
    for (size_t i = 0; i < d; ++i) x[r * d + i] = e[i] * s.embed_scale + (pe ? pe[(r % T) * d + i] : 0.0f);
  }
  for (size_t l = 0; l < L; ++l) {
    auto& a = A.layers[l];
    const auto& S = ps.layers[l];
    a.x_in = x;
    a.a1.resize(R * d);
    a.qkv.resize(R * W);
    a.probs.resize(B * s.n_heads * T * T);
    a.att.resize(R * qw);
    a.a2.resize(R * d);
    a.up.resize(R * f);
    a.hact.resize(R * f);
    if (s.gated_ff) a.gate.resize(R * f);
    norm_forward(pool, s, ps, S.norm1_w, S.norm1_b, x.data(), a.a1.data(), R);
    nn::linear(pool, a.a1.data(), R, d, ps.w(S.qkv_w), ps.w(S.qkv_b), W, a.qkv.data());
    if (s.positions == PositionKind::Rotary) {
      nn::rope(pool, a.qkv.data(), W, R, A.positions.data(), s.n_heads, hd, rd, s.rope_theta);
      nn::rope(pool, a.qkv.data() + qw, W, R, A.positions.data(), s.n_kv_heads, hd, rd, s.rope_theta);
    }
    attention_forward(pool, dims, a.qkv.data(), W, a.probs.data(), a.att.data(), scale, s.window(l));
    nn::linear(pool, a.att.data(), R, qw, ps.w(S.o_w), ps.w(S.o_b), d, tmp.data());
    nn::add_inplace(pool, x.data(), tmp.data(), R * d);
    a.x_mid = x;
    norm_forward(pool, s, ps, S.norm2_w, S.norm2_b, x.data(), a.a2.data(), R);
    nn::linear(pool, a.a2.data(), R, d, ps.w(S.w_in), ps.w(S.b_in), f, a.up.data());
    if (s.gated_ff) {
      nn::linear(pool, a.a2.data(), R, d, ps.w(S.w_gate), ps.w(S.b_gate), f, a.gate.data());
      std::copy(a.up.begin(), a.up.end(), a.hact.begin());
      nn::gated_activate(pool, s.activation, a.gate.data(), a.hact.data(), R * f);
    } else {
      std::copy(a.up.begin(), a.up.end(), a.hact.begin());
      nn::activate(pool, s.activation, a.hact.data(), R * f);
    }
    nn::linear(pool, a.hact.data(), R, f, ps.w(S.w_out), ps.w(S.b_out), d, tmp.data());
    nn::add_inplace(pool, x.data(), tmp.data(), R * d);
  }
  A.x_final = x;
  const float* h = x.data();
  if (s.final_norm) {
    A.a_final.resize(R * d);
    norm_forward(pool, s, ps, ps.final_norm_w, ps.final_norm_b, x.data(), A.a_final.data(), R);
    h = A.a_final.data();
  }
  const int head = ps.lm_head_w != kNone ? ps.lm_head_w : ps.tok_emb;
  std::vector<float> dh(backward ? R * d : 0);
  const double nll = lm_head_loss(pool, h, R, d, ps.w(head), ps.w(ps.lm_head_b), s.vocab, bt.targets, grad_scale,
                                  backward ? dh.data() : nullptr, ps.g(head), ps.g(ps.lm_head_b));
  if (!std::isfinite(nll))
    throw Error("NON_FINITE_ACTIVATIONS", "the training loss is not finite (NaN or Inf): lower the learning rate");
  if (!backward) return nll;

  // ---- backward: dx is the gradient of the residual stream, flowing down through the adds ----
  std::vector<float> dx(R * d, 0.0f);
  if (s.final_norm) norm_backward(pool, s, ps, ps.final_norm_w, ps.final_norm_b, A.x_final.data(), dh.data(), dx.data(), R);
  else dx = dh;
  std::vector<float> dbig(R * f), dgate(s.gated_ff ? R * f : 0), da(R * d), datt(R * qw), dqkv(R * W);
  for (size_t l = L; l-- > 0;) {
    auto& a = A.layers[l];
    const auto& S = ps.layers[l];
    // FF: x_out = x_mid + hact·W_outᵀ + b_out
    std::fill(dbig.begin(), dbig.end(), 0.0f);
    linear_backward(pool, a.hact.data(), ps.w(S.w_out), dx.data(), R, f, d, dbig.data(), ps.g(S.w_out), ps.g(S.b_out));
    std::fill(da.begin(), da.end(), 0.0f);
    if (s.gated_ff) {
      // dbig holds d hact; gated_backward writes d gate and d up (into hact's buffer, no longer needed)
      gated_backward(pool, s.activation, a.gate.data(), a.up.data(), dbig.data(), dgate.data(), a.hact.data(), R * f);
      linear_backward(pool, a.a2.data(), ps.w(S.w_in), a.hact.data(), R, d, f, da.data(), ps.g(S.w_in), ps.g(S.b_in));
      linear_backward(pool, a.a2.data(), ps.w(S.w_gate), dgate.data(), R, d, f, da.data(), ps.g(S.w_gate), ps.g(S.b_gate));
    } else {
      activation_backward(pool, s.activation, a.up.data(), dbig.data(), a.hact.data(), R * f);
      linear_backward(pool, a.a2.data(), ps.w(S.w_in), a.hact.data(), R, d, f, da.data(), ps.g(S.w_in), ps.g(S.b_in));
    }
    norm_backward(pool, s, ps, S.norm2_w, S.norm2_b, a.x_mid.data(), da.data(), dx.data(), R);
    // attention: x_mid = x_in + att·W_oᵀ + b_o
    std::fill(datt.begin(), datt.end(), 0.0f);
    linear_backward(pool, a.att.data(), ps.w(S.o_w), dx.data(), R, qw, d, datt.data(), ps.g(S.o_w), ps.g(S.o_b));
    attention_backward(pool, dims, a.qkv.data(), W, a.probs.data(), datt.data(), dqkv.data(), scale);
    if (s.positions == PositionKind::Rotary) {
      rope_backward(pool, dqkv.data(), W, R, A.positions.data(), s.n_heads, hd, rd, s.rope_theta);
      rope_backward(pool, dqkv.data() + qw, W, R, A.positions.data(), s.n_kv_heads, hd, rd, s.rope_theta);
    }
    std::fill(da.begin(), da.end(), 0.0f);
    linear_backward(pool, a.a1.data(), ps.w(S.qkv_w), dqkv.data(), R, d, W, da.data(), ps.g(S.qkv_w), ps.g(S.qkv_b));
    norm_backward(pool, s, ps, S.norm1_w, S.norm1_b, a.x_in.data(), da.data(), dx.data(), R);
  }
  embedding_backward(dx.data(), bt.ids, R, T, d, s.embed_scale, ps.g(ps.tok_emb), ps.g(ps.pos_emb));
  (void)kw;
  return nll;
}

}  // namespace ffm::train
