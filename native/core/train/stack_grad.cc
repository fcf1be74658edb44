#include "core/train/stack_grad.h"

#include <algorithm>
#include <cmath>

#include "core/nn/ops.h"
#include "core/thread_pool.h"
#include "core/train/grad_ops.h"

namespace ffm::train {

using model::ModelSpec;
using model::NormKind;
using model::PositionKind;

size_t stack_floats_per_sequence(const ModelSpec& s, size_t T) {
  const size_t d = s.d_model, W = s.qkv_width(), qw = s.n_heads * s.head_dim, f = s.d_ff;
  const size_t qk_raw = s.qk_norm ? (s.n_heads + s.n_kv_heads) * s.head_dim : 0;
  const size_t per_layer = T * (5 * d + W + qw + qk_raw + (s.gated_ff ? 3 : 2) * f) + s.n_heads * T * T;
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

// q or k as projected (the n columns at `off` of the fused qkv rows [R, W]), before the per-head norm: the
// backward's input.
void keep_heads(const float* qkv, size_t W, size_t off, size_t R, size_t n, std::vector<float>& raw) {
  raw.resize(R * n);
  for (size_t r = 0; r < R; ++r) std::copy(qkv + r * W + off, qkv + r * W + off + n, raw.data() + r * n);
}

// The per-head RMSNorm's backward (spec.qk_norm): dqkv's heads at `off` hold the gradient of the normed q or k
// on entry and of the raw projection on return; the norm weight's gradient is added to.
void head_norm_backward(ThreadPool* pool, const ModelSpec& s, ParamSet& ps, int w, const std::vector<float>& raw,
                        float* dqkv, size_t W, size_t off, size_t R, size_t heads) {
  const size_t n = heads * s.head_dim;
  std::vector<float> dy(R * n), dx(R * n, 0.0f);
  for (size_t r = 0; r < R; ++r) std::copy(dqkv + r * W + off, dqkv + r * W + off + n, dy.data() + r * n);
  rmsnorm_backward(pool, raw.data(), dy.data(), R * heads, s.head_dim, ps.w(w), s.norm_eps, dx.data(), ps.g(w));
  for (size_t r = 0; r < R; ++r) std::copy(dx.data() + r * n, dx.data() + (r + 1) * n, dqkv + r * W + off);
}

}  // namespace

void stack_forward(ThreadPool* pool, const ModelSpec& s, const ParamSet& ps, std::vector<float>& x, size_t B, size_t T,
                   Activations& A) {
  const size_t R = B * T, d = s.d_model, W = s.qkv_width(), hd = s.head_dim;
  const size_t qw = s.n_heads * hd, f = s.d_ff, L = s.layers;
  const size_t rd = s.rope_dim ? s.rope_dim : hd;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const AttnDims dims{B, T, s.n_heads, s.n_kv_heads, hd, s.causal};
  A.layers.resize(L);
  A.positions.resize(R);
  for (size_t r = 0; r < R; ++r) A.positions[r] = int32_t(r % T);
  std::vector<float> tmp(R * d);
  // what forward.cc computes for a pre-norm block, keeping the intermediates
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
    if (s.qk_norm) {
      const size_t kw = s.n_kv_heads * hd;
      keep_heads(a.qkv.data(), W, 0, R, qw, a.q_raw);
      keep_heads(a.qkv.data(), W, qw, R, kw, a.k_raw);
      nn::rmsnorm_heads(pool, a.qkv.data(), W, R, s.n_heads, hd, ps.w(S.q_norm_w), s.norm_eps);
      nn::rmsnorm_heads(pool, a.qkv.data() + qw, W, R, s.n_kv_heads, hd, ps.w(S.k_norm_w), s.norm_eps);
    }
    if (s.positions == PositionKind::Rotary) {
      nn::rope(pool, a.qkv.data(), W, R, A.positions.data(), s.n_heads, hd, rd, s.rope_theta, s.rope_scaling);
      nn::rope(pool, a.qkv.data() + qw, W, R, A.positions.data(), s.n_kv_heads, hd, rd, s.rope_theta, s.rope_scaling);
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
  if (s.final_norm) {
    A.a_final.resize(R * d);
    norm_forward(pool, s, ps, ps.final_norm_w, ps.final_norm_b, x.data(), A.a_final.data(), R);
  }
}

std::vector<float> stack_backward(ThreadPool* pool, const ModelSpec& s, ParamSet& ps, const std::vector<float>& dh,
                                  size_t B, size_t T, Activations& A) {
  const size_t R = B * T, d = s.d_model, W = s.qkv_width(), hd = s.head_dim;
  const size_t qw = s.n_heads * hd, f = s.d_ff, L = s.layers;
  const size_t rd = s.rope_dim ? s.rope_dim : hd;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const AttnDims dims{B, T, s.n_heads, s.n_kv_heads, hd, s.causal};
  // dx is the gradient of the residual stream, flowing down through the adds
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
      rope_backward(pool, dqkv.data(), W, R, A.positions.data(), s.n_heads, hd, rd, s.rope_theta, s.rope_scaling);
      rope_backward(pool, dqkv.data() + qw, W, R, A.positions.data(), s.n_kv_heads, hd, rd, s.rope_theta, s.rope_scaling);
    }
    if (s.qk_norm) {
      head_norm_backward(pool, s, ps, S.q_norm_w, a.q_raw, dqkv.data(), W, 0, R, s.n_heads);
      head_norm_backward(pool, s, ps, S.k_norm_w, a.k_raw, dqkv.data(), W, qw, R, s.n_kv_heads);
    }
    std::fill(da.begin(), da.end(), 0.0f);
    linear_backward(pool, a.a1.data(), ps.w(S.qkv_w), dqkv.data(), R, d, W, da.data(), ps.g(S.qkv_w), ps.g(S.qkv_b));
    norm_backward(pool, s, ps, S.norm1_w, S.norm1_b, a.x_in.data(), da.data(), dx.data(), R);
  }
  return dx;
}

}  // namespace ffm::train
