// AdamW with decoupled weight decay and bias correction (as torch.optim.AdamW), global-norm gradient
// clipping, and the learning-rate schedule (linear warm-up, then constant or cosine). fp32 master weights
// and moments live in the ParamSet; frozen tensors (no gradient) are skipped.
#pragma once
#include <cstddef>

#include "core/train/params.h"

namespace ffm {
class ThreadPool;
}

namespace ffm::train {

enum class Schedule { Constant, Cosine };

struct AdamWOptions {
  float lr = 2e-4f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;  // applied to 2-D weights only (Param::matrix)
  float clip = 1.0f;          // max global gradient norm; 0 = no clipping
  size_t warmup = 0;          // steps of linear warm-up from lr/warmup to lr
  Schedule schedule = Schedule::Constant;
  float min_lr_ratio = 0.1f;  // cosine decays to lr·min_lr_ratio at the last step
};

// The learning rate of step `step` (0-based) of `steps`.
double learning_rate(const AdamWOptions& o, size_t step, size_t steps);

// √(Σ g²) over every trainable tensor (a tied tensor counted once: it is one tensor).
double grad_norm(ThreadPool* pool, const ParamSet& ps);

// One update with learning rate lr; `t` is the 1-based step for bias correction. Scales the gradients by
// clip/norm first when their global norm exceeds clip. Returns the norm before clipping.
double adamw_step(ThreadPool* pool, ParamSet& ps, const AdamWOptions& o, double lr, size_t t);

}  // namespace ffm::train
