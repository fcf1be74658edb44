// Loss and gradient of a pre-norm image classifier (ViT) on one batch of images: the patch embedding exactly
// as forward.cc's embed_patches computes it (conv weight read as [d, channels·patch²], CLS first, learned
// positions on every position), the stack (stack_grad.h), the classifier on the CLS position's final state,
// softmax cross-entropy on the labels; then the backward.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/model/spec.h"
#include "core/train/params.h"
#include "core/train/stack_grad.h"

namespace ffm {
class ThreadPool;
}

namespace ffm::train {

struct ImageBatch {
  const float* pixels = nullptr;    // [B, channels, H, W], preprocessed as forward() takes them
  const int32_t* labels = nullptr;  // [B], each in [0, num_labels)
  size_t B = 0;
};

// Σ of the cross-entropy over the batch's images (double). With backward, adds the gradient of grad_scale · Σ
// into every trainable parameter's g (grad_scale = 1 / images of the step: the mean loss's gradient). With
// `correct`, adds the number of images whose top-1 class (first maximum, as argmaxRows) equals the label.
double image_loss_and_grad(ThreadPool* pool, const model::ModelSpec& s, ParamSet& ps, const ImageBatch& batch,
                           float grad_scale, bool backward, Activations& act, size_t* correct = nullptr);

}  // namespace ffm::train
