// The transformer stack of a pre-norm model, for training: the blocks' forward pass keeping what the backward
// needs, and the backward through them. Shared by the language-model loss (model_grad.cc) and the image
// classifier loss (image_grad.cc), which differ only in what goes in (embeddings) and comes out (heads).
#pragma once
#include <cstdint>
#include <vector>

#include "core/model/spec.h"
#include "core/train/params.h"

namespace ffm {
class ThreadPool;
}

namespace ffm::train {

// The activations one pass saves for its backward (reused across calls of the same size).
struct Activations {
  struct Layer {
    std::vector<float> x_in, a1, qkv, probs, att, x_mid, a2, up, gate, hact;
    std::vector<float> q_raw, k_raw;  // spec.qk_norm: q and k before their per-head norm [R, heads·head_dim]
  };
  std::vector<Layer> layers;
  std::vector<float> x_final, a_final;
  std::vector<int32_t> positions;
  std::vector<float> cols;  // patch input: the im2col patch vectors [B·patches, patch_dim]
};

// Floats the stack keeps per sequence of length T (for choosing a micro-batch).
size_t stack_floats_per_sequence(const model::ModelSpec& s, size_t T);

// x [B·T, d]: the embedded input on entry, the final residual stream on return (saved in A.x_final), and,
// with a final norm, A.a_final = its normalised form (what a head reads). Attention is causal iff s.causal.
void stack_forward(ThreadPool* pool, const model::ModelSpec& s, const ParamSet& ps, std::vector<float>& x, size_t B,
                   size_t T, Activations& A);

// dh [B·T, d]: the gradient at the head's input (after the final norm when there is one). Returns the gradient
// at the stack's input (the embeddings) and adds every block parameter's gradient into ps.
std::vector<float> stack_backward(ThreadPool* pool, const model::ModelSpec& s, ParamSet& ps, const std::vector<float>& dh,
                                  size_t B, size_t T, Activations& A);

}  // namespace ffm::train
