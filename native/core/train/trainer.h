// The fine-tuning loop: random windows of a token stream, micro-batched forward/backward with summed
// gradients, AdamW, a validation loss every few steps, progress between micro-batches,
// cancel also inside one (its matrix products stop on it). Starts
// from a Model (its ties become shared parameters) and ends in a new Model with the same ties.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "core/job.h"
#include "core/model/weights.h"
#include "core/train/adamw.h"
#include "core/train/params.h"

namespace ffm::train {

struct TrainOptions {
  size_t steps = 100;
  size_t batch = 8;   // sequences per step
  size_t seq = 128;   // positions per sequence (each predicts the next token: windows of seq + 1 tokens)
  size_t micro = 0;   // sequences per forward/backward (0 = as many as ~1 GiB of activations allow)
  uint64_t seed = 0;
  size_t eval_every = 0;  // validation loss every this many steps (0 = only before and after)
  Trainable trainable = Trainable::All;
  AdamWOptions adamw;
};

struct StepLog {
  size_t step = 0;           // 1-based
  double loss = 0;           // mean training NLL of the step's batch (before the update)
  double lr = 0;
  double grad_norm = 0;      // before clipping
  double seconds = 0;        // wall time since the start of training
  double tokens_per_s = 0;   // scored tokens per second so far (token data)
  double images_per_s = 0;   // images per second so far (image data)
  double val_loss = std::numeric_limits<double>::quiet_NaN();      // when evaluated after this step
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();  // image classifiers, with val_loss
};

struct TrainResult {
  std::shared_ptr<const model::Model> model;
  std::vector<StepLog> log;
  double val_before = std::numeric_limits<double>::quiet_NaN(), val_after = std::numeric_limits<double>::quiet_NaN();
  double acc_before = std::numeric_limits<double>::quiet_NaN(), acc_after = std::numeric_limits<double>::quiet_NaN();
};

// tokens: the training stream; validation: blocks [n, val_seq] scored on their own next tokens (may be empty).
// on_step is called on the job's thread after each step (no Node-API there; the binding queues it).
TrainResult finetune(JobControl& ctl, const model::Model& m, const std::vector<int32_t>& tokens,
                     const std::vector<int32_t>& validation, size_t val_seq, const TrainOptions& o,
                     const std::function<void(const StepLog&)>& on_step);

// Mean NLL of blocks [n, T] on their next tokens (the loss the trainer's validation reports). With ctl, a
// cancel is answered between micro-batches (a large validation set is many of them).
double mean_block_loss(ThreadPool* pool, const model::ModelSpec& s, ParamSet& ps, const std::vector<int32_t>& blocks,
                       size_t T, size_t micro, const JobControl* ctl = nullptr);

}  // namespace ffm::train
