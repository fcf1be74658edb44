// Fine-tuning an image classifier (ViT): each step draws `batch` training images (a seeded shuffle, epoch by
// epoch, so every image is seen once per epoch), micro-batched forward/backward with summed gradients, AdamW,
// validation loss and top-1 accuracy before, every few steps and after; progress between micro-batches, cancel
// inside one too. Same options, log and result as the token trainer (trainer.h); `seq` is unused.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "core/job.h"
#include "core/model/weights.h"
#include "core/train/trainer.h"

namespace ffm::train {

// Borrowed images: pixels [n, channels, H, W] preprocessed as forward() takes them, labels [n].
struct ImageSet {
  const float* pixels = nullptr;
  const int32_t* labels = nullptr;
  size_t n = 0;
};

struct ImageEval {
  double loss = 0;      // mean cross-entropy
  double accuracy = 0;  // top-1
};

// With ctl, a cancel is answered between micro-batches (a large validation set is many of them).
ImageEval evaluate_images(ThreadPool* pool, const model::ModelSpec& s, ParamSet& ps, const ImageSet& images,
                          size_t micro, const JobControl* ctl = nullptr);

TrainResult finetune_images(JobControl& ctl, const model::Model& m, const ImageSet& train, const ImageSet& validation,
                            const TrainOptions& o, const std::function<void(const StepLog&)>& on_step);

}  // namespace ffm::train
