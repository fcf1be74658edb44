#include "core/train/image_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/model/stream.h"
#include "core/train/image_grad.h"
#include "core/train/model_grad.h"
#include "core/train/rng.h"

namespace ffm::train {
namespace {

size_t floats_per_image(const model::ModelSpec& s) {
  return stack_floats_per_sequence(s, 1 + s.patches()) + s.patches() * s.patch_dim();
}

// Images per forward/backward: the whole batch if its activations fit ~1 GiB, else equal slices that do.
size_t choose_micro(const model::ModelSpec& s, const TrainOptions& o) {
  if (o.micro) return std::min(o.micro, o.batch);
  const size_t fit = std::max<size_t>(1, (size_t(1) << 30) / (floats_per_image(s) * sizeof(float)));
  const size_t parts = (o.batch + fit - 1) / fit;
  return (o.batch + parts - 1) / parts;
}

void check_options(const model::ModelSpec& s, const ImageSet& train, const ImageSet& val, const TrainOptions& o) {
  if (o.steps == 0 || o.batch == 0) throw Error("INVALID_ARGUMENT", "finetune: steps and batch must be positive");
  if (!(o.adamw.lr > 0) || !std::isfinite(o.adamw.lr)) throw Error("INVALID_ARGUMENT", "finetune: lr must be a positive number");
  if (o.adamw.weight_decay < 0 || o.adamw.clip < 0) throw Error("INVALID_ARGUMENT", "finetune: weightDecay and clip must be ≥ 0");
  if (train.n == 0) throw Error("INVALID_DATA", "finetune: no training images");
  for (const ImageSet* set : {&train, &val})
    for (size_t i = 0; i < set->n; ++i)
      if (set->labels[i] < 0 || size_t(set->labels[i]) >= s.num_labels)
        throw Error("INVALID_DATA", "finetune: label " + std::to_string(set->labels[i]) + " of image " +
                                        std::to_string(i) + " is outside the model's " + std::to_string(s.num_labels) +
                                        " classes");
}

}  // namespace

ImageEval evaluate_images(ThreadPool* pool, const model::ModelSpec& s, ParamSet& ps, const ImageSet& set, size_t micro,
                          const JobControl* ctl) {
  ImageEval r{std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
  if (set.n == 0) return r;
  micro = std::max<size_t>(1, micro);
  const size_t px = s.channels * s.image_h * s.image_w;
  Activations act;
  double sum = 0;
  size_t correct = 0;
  for (size_t b0 = 0; b0 < set.n; b0 += micro) {
    if (ctl) ctl->check();
    const size_t B = std::min(micro, set.n - b0);
    sum += image_loss_and_grad(pool, s, ps, ImageBatch{set.pixels + b0 * px, set.labels + b0, B}, 0.0f, false, act,
                               &correct);
    if (ctl) ctl->part(double(b0 + B), double(set.n));  // images scored (trainer.cc's validation pass says why)
  }
  if (ctl) ctl->part(0, 0);
  r.loss = sum / double(set.n);
  r.accuracy = double(correct) / double(set.n);
  return r;
}

TrainResult finetune_images(JobControl& ctl, const model::Model& streamed_or_not, const ImageSet& train,
                            const ImageSet& validation, const TrainOptions& o,
                            const std::function<void(const StepLog&)>& on_step) {
  // every weight is copied to fp32 below: read streamed layers in first
  const model::Model m = model::resident_copy(ctl, streamed_or_not);
  const CancelScope cancel_scope(ctl);  // an abort stops the products themselves (trainer.cc says why)
  const model::ModelSpec& s = m.spec;
  check_trainable(s);
  if (s.input != model::InputKind::Patches)
    throw Error("INVALID_ARGUMENT", "finetune: this " + s.family + " model takes token ids, not images");
  check_options(s, train, validation, o);
  ThreadPool* pool = &ctl.pool();
  ParamSet ps = params_from_model(m, o.trainable, &ctl);
  const size_t micro = choose_micro(s, o), px = s.channels * s.image_h * s.image_w;
  TrainResult res;
  if (validation.n) {
    const ImageEval e = evaluate_images(pool, s, ps, validation, micro, &ctl);
    res.val_before = e.loss, res.acc_before = e.accuracy;
  }

  Rng rng{o.seed};
  std::vector<size_t> order(train.n);
  std::iota(order.begin(), order.end(), size_t(0));
  size_t next = order.size();  // position in the current epoch's order (a new shuffle when it runs out)
  Activations act;
  std::vector<float> pixels(micro * px);
  std::vector<int32_t> labels(micro);
  // The next image of the seeded epoch-by-epoch shuffle. Drawn micro-batch by micro-batch, in order: nothing
  // else draws within a step, so these are the draws of the whole batch made up front, and the data does not
  // depend on the micro-batch size. Memory is the micro-batch's: the step's picks drawn first took 8 bytes per
  // image of the batch (a batch of 1e9: 8 GB, allocated and filled before the first cancellation check).
  auto draw = [&]() {
    if (next == order.size()) {
      for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
      next = 0;
    }
    return order[next++];
  };
  const auto t0 = std::chrono::steady_clock::now();
  size_t last_b = 0;  // images in the last micro-batch drawn (still in pixels, labels)
  for (size_t step = 0; step < o.steps; ++step) {
    ps.zero_grad();
    const double scale = 1.0 / double(o.batch);
    double nll = 0;
    for (size_t b0 = 0; b0 < o.batch; b0 += micro) {
      ctl.check();
      const size_t B = std::min(micro, o.batch - b0);
      last_b = B;
      for (size_t b = 0; b < B; ++b) {
        const size_t i = draw();
        std::copy(train.pixels + i * px, train.pixels + (i + 1) * px, pixels.data() + b * px);
        labels[b] = train.labels[i];
      }
      nll += image_loss_and_grad(pool, s, ps, ImageBatch{pixels.data(), labels.data(), B}, float(scale), true, act);
      ctl.progress(double(step) + double(b0 + B) / double(o.batch), double(o.steps));
    }
    StepLog lg;
    lg.step = step + 1;
    lg.loss = nll * scale;
    lg.lr = learning_rate(o.adamw, step, o.steps);
    lg.grad_norm = adamw_step(pool, ps, o.adamw, lg.lr, step + 1);
    lg.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    lg.images_per_s = double((step + 1) * o.batch) / std::max(lg.seconds, 1e-9);
    const bool last = step + 1 == o.steps;
    if (validation.n && (last || (o.eval_every && (step + 1) % o.eval_every == 0))) {
      ctl.check();
      ImageEval e;
      score_after_step(step + 1, "validation loss", [&] { return (e = evaluate_images(pool, s, ps, validation, micro, &ctl)).loss; });
      lg.val_loss = e.loss, lg.val_accuracy = e.accuracy;
    }
    if (!std::isfinite(lg.loss))
      throw Error("NON_FINITE_ACTIVATIONS", "training diverged at step " + std::to_string(step + 1) + " (loss is not finite)");
    res.log.push_back(lg);
    if (on_step) on_step(lg);
    // the step is counted once its log can be read (counted by the next step's micro-batches, a run of one
    // micro-batch a step never showed its last-but-one step)
    ctl.progress(double(step + 1), double(o.steps));
  }
  if (validation.n) res.val_after = res.log.back().val_loss, res.acc_after = res.log.back().val_accuracy;
  check_finite(ps, o.steps);
  // as the language-model trainer: without validation, the last micro-batch is scored once more
  if (!validation.n && last_b > 0) {
    ctl.check();
    score_after_step(o.steps, "loss on the last training batch", [&] {
      return image_loss_and_grad(pool, s, ps, ImageBatch{pixels.data(), labels.data(), last_b}, 0.0f, false, act);
    });
  }
  res.model = model_from_params(m, std::move(ps));
  return res;
}

}  // namespace ffm::train
