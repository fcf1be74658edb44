// The transformer's building blocks as plain functions on row-major float buffers (llm.c style): each op
// is one readable loop nest, parallel over rows when a pool is given (nullptr = run on the caller).
// The block in model/forward.cc is a sequence of these calls; encoders, Marian and future decoders reuse
// them unchanged and only choose which ones to call.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/half.h"

namespace ffm {
class ThreadPool;
}

namespace ffm::nn {

// ---- normalisation -------------------------------------------------------------------------------------
// y[r,:] = (x[r,:] - mean) / sqrt(var + eps) * gamma + beta      (gamma/beta may be nullptr = 1/0)
void layernorm(ThreadPool* pool, const float* x, float* y, size_t rows, size_t d, const float* gamma,
               const float* beta, float eps);
// y[r,:] = x[r,:] / sqrt(mean(x^2) + eps) * gamma                 (gamma may be nullptr = 1)
void rmsnorm(ThreadPool* pool, const float* x, float* y, size_t rows, size_t d, const float* gamma, float eps);
// In place, each of `heads` head_dim-wide pieces of each row of x [rows, ld] (q or k inside the fused qkv rows)
// RMS-normalised and scaled by gamma [head_dim], as rmsnorm does a row (Qwen3's q_norm / k_norm).
void rmsnorm_heads(ThreadPool* pool, float* x, size_t ld, size_t rows, size_t heads, size_t head_dim,
                   const float* gamma, float eps);

// ---- activations ---------------------------------------------------------------------------------------
enum class Activation {
  GeluNew,  // GPT-2's tanh approximation ("gelu_new", "gelu_pytorch_tanh")
  GeluErf,  // exact GELU ("gelu": ViT, BERT)
  Silu,     // x·sigmoid(x) ("silu"/"swish": LLaMA, Marian)
  Relu,
};
float activation_value(Activation a, float x);
// x = act(x), in place, n elements.
void activate(ThreadPool* pool, Activation a, float* x, size_t n);
// up = act(gate) * up, in place on `up` (SwiGLU and friends).
void gated_activate(ThreadPool* pool, Activation a, const float* gate, float* up, size_t n);

// ---- linear (on ffm::sgemm) ----------------------------------------------------------------------------
// A Linear weight [out, in]: float32, or 16-bit as the checkpoint stored it (widened inside the GEMM).
struct Weight {
  const float* f32 = nullptr;
  const uint16_t* h16 = nullptr;
  Half type = Half::BF16;
  Weight(const float* w) : f32(w) {}  // NOLINT: implicit, a float pointer is the common case
  Weight(const uint16_t* w, Half t) : h16(w), type(t) {}
};
// y[rows, out] = x[rows, in] · wᵀ + b, with w in Linear layout [out, in] and b [out] or nullptr.
// ldx / ldy are the row strides of x and y (0 = dense: in / out).
void linear(ThreadPool* pool, const float* x, size_t rows, size_t in, Weight w, const float* b, size_t out,
            float* y, size_t ldx = 0, size_t ldy = 0);
// y[r,:] += x[r,:] (residual add), rows × d.
void add_inplace(ThreadPool* pool, float* y, const float* x, size_t n);

// ---- positions -----------------------------------------------------------------------------------------
// How a checkpoint stretches RoPE past the context it was trained on (config.json rope_scaling / rope_parameters):
// none; "linear" (position interpolation: every frequency / factor); "llama3" (Llama 3.1+: low frequencies
// / factor, high ones kept, a smooth blend between, by wavelength against original_max_position_embeddings).
struct RopeScaling {
  enum class Type { None, Linear, Llama3 } type = Type::None;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  float original_max_positions = 8192.0f;
};

// The rotary frequencies inv_freq[0 .. rot_dim/2): 1 / theta^(2i/rot_dim), then the scaling, each step in
// float32 in transformers' order (its rope init functions), so logits match to ~1e-6.
std::vector<float> rope_inv_freq(float theta, size_t rot_dim, const RopeScaling& scaling);

// Rotary embedding in the Hugging Face "rotate-half" layout, in place on n_heads heads of head_dim laid out
// consecutively from column 0 of each row (row stride ld). Row r is at position positions[r]. The first
// rot_dim dims of each head rotate (rot_dim = head_dim for LLaMA): pairs (i, i + rot_dim/2) with angle
// pos · inv_freq[i] (rope_inv_freq), computed in float32 exactly as transformers does.
void rope(ThreadPool* pool, float* x, size_t ld, size_t rows, const int32_t* positions, size_t n_heads,
          size_t head_dim, size_t rot_dim, float theta, const RopeScaling& scaling);

// ---- attention -----------------------------------------------------------------------------------------
// Scaled dot-product attention over `batch` sequences, heads as column blocks of head_dim:
//   q   [batch·seq_q, *] row stride ldq, query head h at column h·head_dim
//   k,v [batch·seq_k, *] row strides ldk/ldv, kv head g at column g·head_dim; query head h uses kv head
//       h / (n_heads / n_kv_heads) (grouped-query attention; n_kv_heads == n_heads is plain MHA)
//   out [batch·seq_q, n_heads·head_dim] row stride ldo
// causal: query i sees keys j ≤ i + (seq_k − seq_q) (self-attention; seq_q < seq_k when the queries are the
// newest positions after a KV cache). key_mask [batch, seq_k] (nullptr = all
// valid): keys with 0 are never attended (padding). A query that sees no valid key outputs zeros.
// window (causal only; 0 = none): sliding-window attention, query at absolute position p = i + (seq_k − seq_q)
// sees key j only when p − j < window (Mistral, Qwen2).
// Cross-attention (encoder–decoder) is the same call with k/v from the encoder, causal = false.
struct AttentionDims {
  size_t batch, seq_q, seq_k, n_heads, n_kv_heads, head_dim;
};
void attention(ThreadPool* pool, const AttentionDims& dims, const float* q, size_t ldq, const float* k, size_t ldk,
               const float* v, size_t ldv, float* out, size_t ldo, bool causal, const uint8_t* key_mask,
               float scale, size_t window = 0);

}  // namespace ffm::nn
