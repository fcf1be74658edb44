// Loss and gradient of a decoder-only pre-norm language model (gpt2, llama/qwen2/mistral) on one batch:
// embeddings, the stack (stack_grad.h) keeping what the backward needs, the LM head's cross-entropy; then the
// backward, op by op in reverse (grad_ops.h). Weights come from a ParamSet, so tied slots read and write one
// tensor. (Image classifiers: image_grad.h.)
#pragma once
#include <cstdint>
#include <vector>

#include "core/model/spec.h"
#include "core/train/params.h"
#include "core/train/stack_grad.h"

namespace ffm {
class ThreadPool;
}

namespace ffm::train {

// Throws UNSUPPORTED_ARCHITECTURE unless the model is one the trainer covers: a decoder-only pre-norm LM, or
// a pre-norm image classifier (ViT).
void check_trainable(const model::ModelSpec& s);

struct TokenBatch {
  const int32_t* ids = nullptr;      // [B, T] inputs
  const int32_t* targets = nullptr;  // [B, T] next token at each position, −1 = not scored
  size_t B = 0, T = 0;
};

// Σ of the next-token NLL over the batch's scored targets (double). With backward, adds the gradient of
// grad_scale · Σ nll into every trainable parameter's g (so grad_scale = 1 / scored targets of the whole step
// gives the mean loss's gradient, summed correctly over micro-batches and over tied uses).
double loss_and_grad(ThreadPool* pool, const model::ModelSpec& s, ParamSet& ps, const TokenBatch& batch,
                     float grad_scale, bool backward, Activations& act);

// Number of scored targets (≥ 0) of a batch.
size_t scored_targets(const TokenBatch& batch);

// Floats loss_and_grad keeps per sequence of length T (for choosing a micro-batch).
size_t activation_floats_per_sequence(const model::ModelSpec& s, size_t T);

}  // namespace ffm::train
