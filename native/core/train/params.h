// The trainable state of a model: a list of UNIQUE fp32 tensors (master weights, gradient, AdamW moments),
// and per slot the index of the tensor it uses. Ties are two slots with one index: the k layers of a merged
// window share one FF parameter set, a tied LM head is tok_emb. The backward pass adds every use's gradient
// into the one tensor's gradient, so a tied tensor's gradient is the sum over its positions and one AdamW
// update keeps the tie by construction.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/job.h"
#include "core/model/weights.h"

namespace ffm::train {

struct Param {
  std::string name;         // the first slot that uses it ("tok_emb", "layers.3.ff.w_in", …)
  std::vector<float> w;     // fp32 master weights
  std::vector<float> g;     // gradient of the step (empty when frozen)
  std::vector<float> m, v;  // AdamW moments (empty until the first update)
  bool matrix = false;      // 2-D weight (gets weight decay); biases and norm gains do not
  bool trainable = true;
  size_t uses = 0;          // slots referencing it (> 1 = tied)
};

constexpr int kNone = -1;

struct LayerSlots {
  int norm1_w = kNone, norm1_b = kNone, qkv_w = kNone, qkv_b = kNone, o_w = kNone, o_b = kNone;
  int q_norm_w = kNone, k_norm_w = kNone;
  int norm2_w = kNone, norm2_b = kNone;
  int w_in = kNone, b_in = kNone, w_gate = kNone, b_gate = kNone, w_out = kNone, b_out = kNone;
};

struct ParamSet {
  std::vector<Param> params;
  int tok_emb = kNone, pos_emb = kNone, final_norm_w = kNone, final_norm_b = kNone, lm_head_w = kNone,
      lm_head_b = kNone;
  // image classifiers (ViT): the patch embedding, the CLS token, the classifier head
  int patch_w = kNone, patch_b = kNone, cls_token = kNone, classifier_w = kNone, classifier_b = kNone;
  std::vector<LayerSlots> layers;

  // Pointer to a slot's weights / gradient (nullptr for an absent slot or a frozen tensor's gradient).
  const float* w(int i) const { return i == kNone ? nullptr : params[size_t(i)].w.data(); }
  float* g(int i) {
    if (i == kNone) return nullptr;
    auto& p = params[size_t(i)];
    return p.g.empty() ? nullptr : p.g.data();
  }
  // Every slot as (name, index), in model order, for the binding and the tests.
  std::vector<std::pair<std::string, int>> slots() const;
  void zero_grad();
};

// Throws NON_FINITE_ACTIVATIONS naming the first trained tensor holding NaN or Inf. The trainers call it after
// the last update: a diverged earlier update shows in the next step's loss, the last one in nothing, and its
// weights would be saved as they are.
void check_finite(const ParamSet& ps, size_t steps);

// Runs `score` (a loss without gradient, the model as trained up to `step`): a non-finite loss there is the
// training diverging, and says so (the loss functions' own message blames the training loss or the data).
// Finite weights can be a diverged model too: an lr of 1e30 leaves them near 1e30, and every pass overflows.
template <class Score>
double score_after_step(size_t step, const char* what, Score&& score) {
  try {
    return score();
  } catch (const Error& e) {
    if (e.code() != "NON_FINITE_ACTIVATIONS") throw;
    throw Error("NON_FINITE_ACTIVATIONS", "training diverged: after step " + std::to_string(step) + " the " + what +
                                              " is not finite (NaN or Inf; the learning rate is too high); nothing is saved");
  }
}

// Which tensors train: everything, or only the FF sublayers (attention, norms, embeddings frozen).
enum class Trainable { All, FeedForward };

// The unique tensors of a model (ties found by buffer identity), weights copied to fp32.
// `ctl`, when given, is checked before each tensor is copied (widening takes seconds at 7B width). With
// `progress`, the slots read are its progress too (the job that only reads the weights out; a trainer's
// progress counts its steps).
ParamSet params_from_model(const model::Model& m, Trainable which = Trainable::All, JobControl* ctl = nullptr, bool progress = false);

// A new Model with `base`'s spec whose slots hold the trained weights; slots that shared a tensor share the
// new one (and layers that shared an FF share one FFWeights), so the result has base's tie structure.
std::shared_ptr<const model::Model> model_from_params(const model::Model& base, ParamSet&& ps);

}  // namespace ffm::train
