#include "core/train/model_grad.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"
#include "core/train/grad_ops.h"

namespace ffm::train {

using model::ModelSpec;
using model::PositionKind;

void check_trainable(const ModelSpec& s) {
  std::string why;
  const bool image = s.input == model::InputKind::Patches;
  if (image && s.head != model::HeadKind::Classifier) why = "it takes images but has no classifier head";
  else if (!image && (s.input != model::InputKind::Tokens || s.head != model::HeadKind::LMHead))
    why = "it is not a token-in, LM-head-out model";
  else if (s.placement != model::NormPlacement::Pre) why = "it normalises after each sublayer (post-norm)";
  else if (s.cross_attention) why = "it has cross-attention (encoder–decoder)";
  else if (!image && !s.causal) why = "its attention is not causal";
  else if (s.embed_norm || s.type_vocab || s.pooler) why = "it has BERT-style embeddings or pooler";
  else if (s.positions == PositionKind::Sinusoidal) why = "it uses sinusoidal positions";
  else if (image && s.positions != PositionKind::Learned) why = "its image positions are not a learned table";
  if (!why.empty())
    throw Error("UNSUPPORTED_ARCHITECTURE", "fine-tuning covers decoder-only pre-norm language models (such as gpt2, llama, "
                                            "qwen2, qwen3, mistral) and pre-norm image classifiers (vit); this " + s.family +
                                            " model is not one: " + why);
}

size_t scored_targets(const TokenBatch& b) {
  size_t n = 0;
  for (size_t r = 0; r < b.B * b.T; ++r) n += b.targets[r] >= 0;
  return n;
}

size_t activation_floats_per_sequence(const ModelSpec& s, size_t T) { return stack_floats_per_sequence(s, T); }

double loss_and_grad(ThreadPool* pool, const ModelSpec& s, ParamSet& ps, const TokenBatch& bt, float grad_scale,
                     bool backward, Activations& A) {
  if (s.input != model::InputKind::Tokens || s.head != model::HeadKind::LMHead)
    throw Error("INVALID_ARGUMENT", "this " + s.family + " model does not take token ids (it is trained on images)");
  const size_t B = bt.B, T = bt.T, R = B * T, d = s.d_model;
  if (s.positions == PositionKind::Learned && T > s.max_positions)
    throw Error("SEQUENCE_TOO_LONG", "sequence length " + std::to_string(T) + " is longer than the model's " +
                                         std::to_string(s.max_positions) + " positions");
  for (size_t r = 0; r < R; ++r) {
    if (bt.ids[r] < 0 || size_t(bt.ids[r]) >= s.vocab || bt.targets[r] >= int32_t(s.vocab))
      throw Error("INVALID_ARGUMENT", "token id outside the vocabulary (size " + std::to_string(s.vocab) + ")");
  }

  // ---- forward: embed → blocks → final norm (stack_grad.cc) → LM head + cross-entropy ----
  std::vector<float> x(R * d);
  const float* te = ps.w(ps.tok_emb);
  const float* pe = ps.w(ps.pos_emb);
  for (size_t r = 0; r < R; ++r) {
    const float* e = te + size_t(bt.ids[r]) * d;
    for (size_t i = 0; i < d; ++i) x[r * d + i] = e[i] * s.embed_scale + (pe ? pe[(r % T) * d + i] : 0.0f);
  }
  stack_forward(pool, s, ps, x, B, T, A);
  const float* h = s.final_norm ? A.a_final.data() : A.x_final.data();
  const int head = ps.lm_head_w != kNone ? ps.lm_head_w : ps.tok_emb;
  std::vector<float> dh(backward ? R * d : 0);
  const double nll = lm_head_loss(pool, h, R, d, ps.w(head), ps.w(ps.lm_head_b), s.vocab, bt.targets, grad_scale,
                                  backward ? dh.data() : nullptr, ps.g(head), ps.g(ps.lm_head_b));
  if (!std::isfinite(nll))
    throw Error("NON_FINITE_ACTIVATIONS", std::string(backward ? "the training loss" : "the loss") +
                                              " is not finite (NaN or Inf): the model's weights or the data hold non-finite values, or the learning rate is too high");
  if (!backward) return nll;

  // ---- backward ----
  const std::vector<float> dx = stack_backward(pool, s, ps, dh, B, T, A);
  embedding_backward(dx.data(), bt.ids, R, T, d, s.embed_scale, ps.g(ps.tok_emb), ps.g(ps.pos_emb));
  return nll;
}

}  // namespace ffm::train
