// Backward passes of the transformer ops (llm.c style: one function per op, plain loops or ffm::sgemm, rows
// in parallel on the pool), plus the two forward ops training needs in another form than nn:: has them:
// attention that keeps its softmax probabilities, and the LM head fused with its cross-entropy.
//
// Conventions: row-major float buffers; `dx` outputs of norms/linears are ACCUMULATED (+=) so residual
// gradients add up in place; weight/bias gradients are accumulated (+=) too (ties and micro-batches sum), and
// a nullptr weight/bias gradient means "frozen, skip". Reductions over rows go through fixed chunks with
// double partial sums, so results do not depend on the thread count.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/nn/ops.h"

namespace ffm {
class ThreadPool;
}

namespace ffm::train {

// y = x·wᵀ + b (nn::linear).  dx[R,in] += dy·w ; dw[out,in] += dyᵀ·x ; db[out] += Σ_r dy.
void linear_backward(ThreadPool* pool, const float* x, const float* w, const float* dy, size_t rows, size_t in,
                     size_t out, float* dx, float* dw, float* db);

// y = layernorm(x)·gamma + beta.  dx += ∂/∂x ; dgamma, dbeta += (gamma == nullptr: no affine).
void layernorm_backward(ThreadPool* pool, const float* x, const float* dy, size_t rows, size_t d, const float* gamma,
                        float eps, float* dx, float* dgamma, float* dbeta);
// y = x / rms(x) · gamma.
void rmsnorm_backward(ThreadPool* pool, const float* x, const float* dy, size_t rows, size_t d, const float* gamma,
                      float eps, float* dx, float* dgamma);

// h = act(pre): dpre = dh · act'(pre), written (n elements).
void activation_backward(ThreadPool* pool, nn::Activation a, const float* pre, const float* dh, float* dpre, size_t n);
// h = act(gate) · up: dup = dh·act(gate), dgate = dh·up·act'(gate), written.
void gated_backward(ThreadPool* pool, nn::Activation a, const float* gate, const float* up, const float* dh, float* dgate,
                    float* dup, size_t n);

// Rotary embedding is a rotation per (position, pair): its backward is the inverse rotation, applied in place
// to the gradient of the rotated q or k (layout as nn::rope).
void rope_backward(ThreadPool* pool, float* dx, size_t ld, size_t rows, const int32_t* positions, size_t n_heads,
                   size_t head_dim, size_t rot_dim, float theta, const nn::RopeScaling& scaling);

// Self-attention over B sequences of T positions on a fused qkv buffer [B·T, W] (q heads at column h·hd,
// k at qw + g·hd, v at qw + kw + g·hd; GQA: query head h uses kv head h / (H / KV)). Same masking and softmax
// as nn::attention: causal (decoders; window > 0: sliding window) or every key visible (encoders such as
// ViT, no padding). Saves probs [B, H, T, T] for the backward.
struct AttnDims {
  size_t B, T, H, KV, hd;
  bool causal = true;
};
void attention_forward(ThreadPool* pool, const AttnDims& dm, const float* qkv, size_t W, float* probs, float* out,
                       float scale, size_t window);
// dqkv [B·T, W] is written (q, k and v columns; zero where nothing flows).
void attention_backward(ThreadPool* pool, const AttnDims& dm, const float* qkv, size_t W, const float* probs,
                        const float* dout, float* dqkv, float scale);

// LM head + cross-entropy, fused a row block at a time (no rows·vocab buffer): logits = h·Wᵀ + b, nll of
// targets[r] (−1 = not scored). Returns Σ nll (double). With dh non-null also the backward of
// loss = grad_scale · Σ nll: dh written, dW/db accumulated (nullptr = frozen).
double lm_head_loss(ThreadPool* pool, const float* h, size_t rows, size_t d, const float* W, const float* b, size_t V,
                    const int32_t* targets, float grad_scale, float* dh, float* dW, float* db);

// x[r] = tok[ids[r]]·scale + pos[r % T]: dtok[ids[r]] += scale·dx[r], dpos[r % T] += dx[r] (either may be null).
void embedding_backward(const float* dx, const int32_t* ids, size_t rows, size_t T, size_t d, float scale,
                        float* dtok, float* dpos);

}  // namespace ffm::train
