#include "core/train/trainer.h"

#include "core/model/stream.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/train/model_grad.h"
#include "core/train/rng.h"

namespace ffm::train {
namespace {

// Sequences per forward/backward: whole batch if its activations fit ~1 GiB, else equal slices that do.
size_t choose_micro(const model::ModelSpec& s, const TrainOptions& o) {
  if (o.micro) return std::min(o.micro, o.batch);
  const size_t per_seq = std::max<size_t>(1, activation_floats_per_sequence(s, o.seq) * sizeof(float));
  const size_t fit = std::max<size_t>(1, (size_t(1) << 30) / per_seq);
  const size_t parts = (o.batch + fit - 1) / fit;
  return (o.batch + parts - 1) / parts;
}

void check_options(const model::ModelSpec& s, const std::vector<int32_t>& tokens, const TrainOptions& o) {
  if (o.steps == 0 || o.batch == 0 || o.seq < 1) throw Error("INVALID_ARGUMENT", "finetune: steps, batch and seq must be positive");
  if (!(o.adamw.lr > 0) || !std::isfinite(o.adamw.lr)) throw Error("INVALID_ARGUMENT", "finetune: lr must be a positive number");
  if (o.adamw.weight_decay < 0 || o.adamw.clip < 0) throw Error("INVALID_ARGUMENT", "finetune: weightDecay and clip must be ≥ 0");
  if (s.positions == model::PositionKind::Learned && o.seq > s.max_positions)
    throw Error("SEQUENCE_TOO_LONG", "finetune: seq " + std::to_string(o.seq) + " is longer than the model's " +
                                         std::to_string(s.max_positions) + " positions");
  if (tokens.size() < o.seq + 1)
    throw Error("INVALID_DATA", "finetune: the training data has " + std::to_string(tokens.size()) +
                                    (tokens.size() == 1 ? " token" : " tokens") + ", fewer than one window of seq + 1 = " +
                                    std::to_string(o.seq + 1));
  for (int32_t t : tokens)
    if (t < 0 || size_t(t) >= s.vocab)
      throw Error("INVALID_DATA", "finetune: token id " + std::to_string(t) + " is outside the vocabulary (size " +
                                      std::to_string(s.vocab) + ")");
}

}  // namespace

double mean_block_loss(ThreadPool* pool, const model::ModelSpec& s, ParamSet& ps, const std::vector<int32_t>& blocks,
                       size_t T, size_t micro, const JobControl* ctl) {
  if (blocks.empty() || T < 2) return std::numeric_limits<double>::quiet_NaN();
  const size_t n = blocks.size() / T;
  micro = std::max<size_t>(1, micro);
  Activations act;
  double sum = 0;
  size_t count = 0;
  std::vector<int32_t> targets;
  for (size_t b0 = 0; b0 < n; b0 += micro) {
    if (ctl) ctl->check();
    const size_t B = std::min(micro, n - b0);
    targets.assign(B * T, -1);
    const int32_t* ids = blocks.data() + b0 * T;
    for (size_t b = 0; b < B; ++b)
      for (size_t t = 0; t + 1 < T; ++t) targets[b * T + t] = ids[b * T + t + 1];
    TokenBatch tb{ids, targets.data(), B, T};
    sum += loss_and_grad(pool, s, ps, tb, 0.0f, false, act);
    count += scored_targets(tb);
    if (ctl) ctl->part(double(b0 + B), double(n));  // a large validation set is minutes between two steps
  }
  if (ctl) ctl->part(0, 0);
  return sum / double(count);
}

TrainResult finetune(JobControl& ctl, const model::Model& streamed_or_not, const std::vector<int32_t>& tokens,
                     const std::vector<int32_t>& validation, size_t val_seq, const TrainOptions& o,
                     const std::function<void(const StepLog&)>& on_step) {
  // every weight is copied to fp32 below: read streamed layers in first
  const model::Model m = model::resident_copy(ctl, streamed_or_not);
  // An abort stops the matrix products themselves, within a cache block: a micro-batch is sized to ~1 GiB of
  // activations, tens of seconds at GPT-2-small width on two cores, and checks between micro-batches alone
  // held an aborted job that long. Everything trained is this job's own copy, so stopping mid-product is safe.
  const CancelScope cancel_scope(ctl);
  const model::ModelSpec& s = m.spec;
  check_trainable(s);
  check_options(s, tokens, o);
  ThreadPool* pool = &ctl.pool();
  ParamSet ps = params_from_model(m, o.trainable, &ctl);
  const size_t micro = choose_micro(s, o), T = o.seq;
  TrainResult res;
  if (!validation.empty()) res.val_before = mean_block_loss(pool, s, ps, validation, val_seq, micro, &ctl);

  Rng rng{o.seed};
  Activations act;
  std::vector<int32_t> ids(micro * T), targets(micro * T);
  const size_t windows = tokens.size() - T;  // offsets 0 .. n − T − 1 (each window is T + 1 tokens)
  const auto t0 = std::chrono::steady_clock::now();
  double tokens_done = 0;
  size_t last_b = 0;  // sequences in the last micro-batch drawn (still in ids, targets)
  for (size_t step = 0; step < o.steps; ++step) {
    ps.zero_grad();
    const double scale = 1.0 / double(o.batch * T);
    double nll = 0;
    for (size_t b0 = 0; b0 < o.batch; b0 += micro) {
      ctl.check();
      const size_t B = std::min(micro, o.batch - b0);
      last_b = B;
      // Each micro-batch draws its own windows, in order: nothing else draws from rng within a step, so these
      // are the draws of the whole batch made up front, and the data does not depend on the micro-batch size.
      // Memory is the micro-batch's: the step's offsets drawn first took 8 bytes per sequence of the batch
      // (a batch of 1e9: 8 GB, allocated and filled before the first cancellation check).
      for (size_t b = 0; b < B; ++b) {
        const int32_t* w = tokens.data() + rng.below(windows);
        std::copy(w, w + T, ids.data() + b * T);
        std::copy(w + 1, w + T + 1, targets.data() + b * T);
      }
      nll += loss_and_grad(pool, s, ps, TokenBatch{ids.data(), targets.data(), B, T}, float(scale), true, act);
      ctl.progress(double(step) + double(b0 + B) / double(o.batch), double(o.steps));
    }
    StepLog lg;
    lg.step = step + 1;
    lg.loss = nll * scale;
    lg.lr = learning_rate(o.adamw, step, o.steps);
    lg.grad_norm = adamw_step(pool, ps, o.adamw, lg.lr, step + 1);
    tokens_done += double(o.batch * T);
    lg.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    lg.tokens_per_s = tokens_done / std::max(lg.seconds, 1e-9);
    const bool last = step + 1 == o.steps;
    if (!validation.empty() && (last || (o.eval_every && (step + 1) % o.eval_every == 0))) {
      ctl.check();
      lg.val_loss = score_after_step(step + 1, "validation loss", [&] { return mean_block_loss(pool, s, ps, validation, val_seq, micro, &ctl); });
    }
    if (!std::isfinite(lg.loss))
      throw Error("NON_FINITE_ACTIVATIONS", "training diverged at step " + std::to_string(step + 1) + " (loss is not finite)");
    res.log.push_back(lg);
    if (on_step) on_step(lg);
    // the step is counted once its log can be read (counted by the next step's micro-batches, a run of one
    // micro-batch a step never showed its last-but-one step)
    ctl.progress(double(step + 1), double(o.steps));
  }
  if (!validation.empty()) res.val_after = res.log.back().val_loss;
  check_finite(ps, o.steps);
  // Without validation nothing ran the model after the last update: its last micro-batch is scored once more
  // (no gradient, no draw from the generator, so the weights and the run are unchanged).
  if (validation.empty() && last_b > 0) {
    ctl.check();
    score_after_step(o.steps, "loss on the last training batch", [&] {
      return loss_and_grad(pool, s, ps, TokenBatch{ids.data(), targets.data(), last_b, T}, 0.0f, false, act);
    });
  }
  res.model = model_from_params(m, std::move(ps));
  return res;
}

}  // namespace ffm::train
