#include "core/train/image_grad.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/nn/ops.h"
#include "core/thread_pool.h"
#include "core/train/grad_ops.h"

namespace ffm::train {

using model::ModelSpec;

namespace {

// cols[b·P + p] = patch p of image b as a vector in the conv weight's (channel, ky, kx) order, patches in
// row-major order over the image (forward.cc's embed_patches).
void patch_columns(ThreadPool* pool, const ModelSpec& s, const float* pixels, size_t B, float* cols) {
  const size_t P = s.patches(), pd = s.patch_dim(), p = s.patch, C = s.channels;
  const size_t H = s.image_h, Wd = s.image_w, gw = Wd / p;
  auto body = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const size_t b = r / P, pi = r % P, py = pi / gw, px = pi % gw;
      float* c = cols + r * pd;
      for (size_t ch = 0; ch < C; ++ch)
        for (size_t ky = 0; ky < p; ++ky) {
          const float* src = pixels + ((b * C + ch) * H + py * p + ky) * Wd + px * p;
          std::copy(src, src + p, c + (ch * p + ky) * p);
        }
    }
  };
  if (pool) pool->parallel_for(B * P, 16, body);
  else body(0, B * P);
}

}  // namespace

double image_loss_and_grad(ThreadPool* pool, const ModelSpec& s, ParamSet& ps, const ImageBatch& bt, float grad_scale,
                           bool backward, Activations& A, size_t* correct) {
  if (s.input != model::InputKind::Patches || s.head != model::HeadKind::Classifier)
    throw Error("INVALID_ARGUMENT", "this " + s.family + " model is not an image classifier (it takes token ids)");
  const size_t B = bt.B, P = s.patches(), T = 1 + P, R = B * T, d = s.d_model, pd = s.patch_dim();
  const size_t NL = s.num_labels;
  for (size_t b = 0; b < B; ++b)
    if (bt.labels[b] < 0 || size_t(bt.labels[b]) >= NL)
      throw Error("INVALID_DATA", "label " + std::to_string(bt.labels[b]) + " is outside the model's " +
                                      std::to_string(NL) + " classes");

  // ---- forward: patches → patch_w → [CLS, patches] + positions → stack → final norm → classifier on CLS ----
  A.cols.resize(B * P * pd);
  patch_columns(pool, s, bt.pixels, B, A.cols.data());
  std::vector<float> emb(B * P * d), x(R * d);
  nn::linear(pool, A.cols.data(), B * P, pd, ps.w(ps.patch_w), ps.w(ps.patch_b), d, emb.data());
  const float* cls = ps.w(ps.cls_token);
  const float* pe = ps.w(ps.pos_emb);
  for (size_t b = 0; b < B; ++b) {
    std::copy(cls, cls + d, x.data() + b * T * d);
    std::copy(emb.data() + b * P * d, emb.data() + (b + 1) * P * d, x.data() + (b * T + 1) * d);
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t i = 0; i < d; ++i) x[r * d + i] += pe[(r % T) * d + i];
  stack_forward(pool, s, ps, x, B, T, A);
  const std::vector<float>& hs = s.final_norm ? A.a_final : A.x_final;
  std::vector<float> h(B * d);
  for (size_t b = 0; b < B; ++b) std::copy(hs.data() + b * T * d, hs.data() + b * T * d + d, h.data() + b * d);
  if (correct) {
    std::vector<float> logits(B * NL);
    nn::linear(pool, h.data(), B, d, ps.w(ps.classifier_w), ps.w(ps.classifier_b), NL, logits.data());
    for (size_t b = 0; b < B; ++b) {
      const float* lr = logits.data() + b * NL;
      *correct += size_t(std::max_element(lr, lr + NL) - lr) == size_t(bt.labels[b]);
    }
  }
  // the classifier is a one-position "LM head" over num_labels classes: the fused head + cross-entropy
  std::vector<float> dh(backward ? B * d : 0);
  const double nll = lm_head_loss(pool, h.data(), B, d, ps.w(ps.classifier_w), ps.w(ps.classifier_b), NL, bt.labels,
                                  grad_scale, backward ? dh.data() : nullptr, ps.g(ps.classifier_w),
                                  ps.g(ps.classifier_b));
  if (!std::isfinite(nll))
    throw Error("NON_FINITE_ACTIVATIONS", std::string(backward ? "the training loss" : "the loss") +
                                              " is not finite (NaN or Inf): the model's weights or the data hold non-finite values, or the learning rate is too high");
  if (!backward) return nll;

  // ---- backward: only the CLS rows reach the head ----
  std::vector<float> dhs(R * d, 0.0f);
  for (size_t b = 0; b < B; ++b) std::copy(dh.data() + b * d, dh.data() + (b + 1) * d, dhs.data() + b * T * d);
  const std::vector<float> dx = stack_backward(pool, s, ps, dhs, B, T, A);
  embedding_backward(dx.data(), nullptr, R, T, d, 1.0f, nullptr, ps.g(ps.pos_emb));
  if (float* dcls = ps.g(ps.cls_token))
    for (size_t b = 0; b < B; ++b)
      for (size_t i = 0; i < d; ++i) dcls[i] += dx[b * T * d + i];
  float* dpw = ps.g(ps.patch_w);
  float* dpb = ps.g(ps.patch_b);
  if (dpw || dpb) {
    for (size_t b = 0; b < B; ++b)
      std::copy(dx.data() + (b * T + 1) * d, dx.data() + (b + 1) * T * d, emb.data() + b * P * d);
    linear_backward(pool, A.cols.data(), ps.w(ps.patch_w), emb.data(), B * P, pd, d, nullptr, dpw, dpb);
  }
  return nll;
}

}  // namespace ffm::train
