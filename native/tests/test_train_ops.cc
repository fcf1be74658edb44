// Backward ops of the trainer (native/core/train) against central finite differences of their forward, on
// random inputs of odd sizes; then the whole model's gradient, the tie rule (a shared tensor's gradient is
// the sum over its uses), and a few AdamW steps on one batch.
//
// The forward ops run in float, so each check uses a probe loss L = Σ c·y (c random, summed in double) and a
// step of 1e-3 to 3e-3: the finite-difference noise is then ~1e-4 of the gradient, far below any real bug.
// (The float64 oracle of the whole model is test/finetune-gradients.test.ts.)
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "core/model/forward.h"
#include "core/nn/ops.h"
#include "core/train/adamw.h"
#include "core/train/grad_ops.h"
#include "core/train/image_grad.h"
#include "core/train/image_trainer.h"
#include "core/train/model_grad.h"
#include "core/train/params.h"
#include "core/train/trainer.h"
#include "tiny_model.h"

using namespace ffm;
using namespace ffm::train;

namespace {

std::vector<float> randv(size_t n, std::mt19937& g, float scale = 0.5f, float offset = 0) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = offset + nd(g);
  return v;
}

double dot(const std::vector<float>& c, const float* y) {
  double s = 0;
  for (size_t i = 0; i < c.size(); ++i) s += double(c[i]) * y[i];
  return s;
}

// Relative error ‖analytic − numeric‖ / ‖numeric‖ over (at most `limit`) entries of x, numeric by central
// differences of f() with step h.
double fd_error(std::vector<float>& x, const std::vector<float>& analytic, const std::function<double()>& f,
                float h = 1e-3f, size_t limit = 60) {
  double num = 0, den = 0;
  const size_t stride = std::max<size_t>(1, x.size() / limit);
  for (size_t i = 0; i < x.size(); i += stride) {
    const float keep = x[i];
    x[i] = keep + h;
    const double up = f();
    x[i] = keep - h;
    const double down = f();
    x[i] = keep;
    const double g = (up - down) / (2.0 * double(h));
    num += (g - analytic[i]) * (g - analytic[i]);
    den += g * g;
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

TEST(linear_backward_matches_finite_differences) {
  std::mt19937 g(1);
  const size_t R = 5, in = 7, out = 3;
  auto x = randv(R * in, g), w = randv(out * in, g), b = randv(out, g), c = randv(R * out, g);
  std::vector<float> y(R * out);
  auto f = [&] {
    nn::linear(nullptr, x.data(), R, in, w.data(), b.data(), out, y.data());
    return dot(c, y.data());
  };
  std::vector<float> dx(R * in, 0.0f), dw(out * in, 0.0f), db(out, 0.0f);
  linear_backward(&test::pool(), x.data(), w.data(), c.data(), R, in, out, dx.data(), dw.data(), db.data());
  CHECK(fd_error(x, dx, f) < 1e-3);
  CHECK(fd_error(w, dw, f) < 1e-3);
  CHECK(fd_error(b, db, f) < 1e-3);
}

TEST(norm_backward_matches_finite_differences) {
  std::mt19937 g(2);
  const size_t R = 6, d = 11;
  auto x = randv(R * d, g, 1.0f, 0.3f), gamma = randv(d, g, 0.3f, 1.0f), beta = randv(d, g), c = randv(R * d, g);
  std::vector<float> y(R * d);
  for (int kind = 0; kind < 2; ++kind) {
    auto f = [&] {
      if (kind == 0) nn::layernorm(nullptr, x.data(), y.data(), R, d, gamma.data(), beta.data(), 1e-5f);
      else nn::rmsnorm(nullptr, x.data(), y.data(), R, d, gamma.data(), 1e-5f);
      return dot(c, y.data());
    };
    std::vector<float> dx(R * d, 0.0f), dg(d, 0.0f), dbeta(d, 0.0f);
    if (kind == 0) layernorm_backward(&test::pool(), x.data(), c.data(), R, d, gamma.data(), 1e-5f, dx.data(), dg.data(), dbeta.data());
    else rmsnorm_backward(&test::pool(), x.data(), c.data(), R, d, gamma.data(), 1e-5f, dx.data(), dg.data());
    CHECK(fd_error(x, dx, f) < 2e-3);
    CHECK(fd_error(gamma, dg, f) < 2e-3);
    if (kind == 0) CHECK(fd_error(beta, dbeta, f) < 2e-3);
  }
}

TEST(activation_backward_matches_finite_differences) {
  std::mt19937 g(3);
  const size_t n = 37;
  for (auto a : {nn::Activation::GeluNew, nn::Activation::GeluErf, nn::Activation::Silu}) {
    auto x = randv(n, g, 1.5f), c = randv(n, g);
    std::vector<float> y(n);
    auto f = [&] {
      y = x;
      nn::activate(nullptr, a, y.data(), n);
      return dot(c, y.data());
    };
    std::vector<float> dx(n);
    activation_backward(nullptr, a, x.data(), c.data(), dx.data(), n);
    CHECK(fd_error(x, dx, f) < 2e-3);
    // gated: h = act(gate)·up
    auto gate = randv(n, g, 1.5f), up = randv(n, g);
    auto fg = [&] {
      y = up;
      nn::gated_activate(nullptr, a, gate.data(), y.data(), n);
      return dot(c, y.data());
    };
    std::vector<float> dgate(n), dup(n);
    gated_backward(nullptr, a, gate.data(), up.data(), c.data(), dgate.data(), dup.data(), n);
    CHECK(fd_error(gate, dgate, fg) < 2e-3);
    CHECK(fd_error(up, dup, fg) < 2e-3);
  }
}

TEST(rope_backward_is_the_transpose) {
  std::mt19937 g(4);
  const size_t R = 9, H = 3, hd = 6, ld = 23;  // odd row stride, rows at positions 0..8
  auto x = randv(R * ld, g), c = randv(R * ld, g);
  std::vector<int32_t> pos(R);
  for (size_t r = 0; r < R; ++r) pos[r] = int32_t(r * 3);
  std::vector<float> y;
  auto f = [&] {
    y = x;
    nn::rope(nullptr, y.data(), ld, R, pos.data(), H, hd, hd, 500.0f, {});
    double s = 0;  // only the rotated columns count
    for (size_t r = 0; r < R; ++r)
      for (size_t i = 0; i < H * hd; ++i) s += double(c[r * ld + i]) * y[r * ld + i];
    return s;
  };
  std::vector<float> dx(R * ld, 0.0f);
  for (size_t r = 0; r < R; ++r)
    for (size_t i = 0; i < H * hd; ++i) dx[r * ld + i] = c[r * ld + i];
  rope_backward(nullptr, dx.data(), ld, R, pos.data(), H, hd, hd, 500.0f, {});
  // columns past H·hd are untouched by rope, their gradient is 0
  for (size_t r = 0; r < R; ++r)
    for (size_t i = H * hd; i < ld; ++i) dx[r * ld + i] = 0.0f;
  CHECK(fd_error(x, dx, f, 1e-3f, 200) < 1e-3);
}

TEST(attention_forward_matches_nn_and_backward_matches_finite_differences) {
  std::mt19937 g(5);
  // window 3: sliding; SIZE_MAX: not causal (encoders: every key visible)
  for (size_t window : {size_t(0), size_t(3), SIZE_MAX}) {
    const bool causal = window != SIZE_MAX;
    if (!causal) window = 0;
    const size_t B = 2, T = 7, H = 4, KV = 2, hd = 5, qw = H * hd, kw = KV * hd, W = qw + 2 * kw;
    const AttnDims dm{B, T, H, KV, hd, causal};
    const float scale = 1.0f / std::sqrt(float(hd));
    auto qkv = randv(B * T * W, g, 0.8f), c = randv(B * T * qw, g);
    std::vector<float> probs(B * H * T * T), out(B * T * qw), ref(B * T * qw);
    attention_forward(&test::pool(), dm, qkv.data(), W, probs.data(), out.data(), scale, window);
    nn::AttentionDims nd{B, T, T, H, KV, hd};
    nn::attention(nullptr, nd, qkv.data(), W, qkv.data() + qw, W, qkv.data() + qw + kw, W, ref.data(), qw, causal,
                  nullptr, scale, window);
    double err = 0;
    for (size_t i = 0; i < out.size(); ++i) err = std::max(err, double(std::fabs(out[i] - ref[i])));
    CHECK(err < 1e-6);
    auto f = [&] {
      attention_forward(nullptr, dm, qkv.data(), W, probs.data(), out.data(), scale, window);
      return dot(c, out.data());
    };
    f();
    std::vector<float> dqkv(B * T * W);
    attention_backward(&test::pool(), dm, qkv.data(), W, probs.data(), c.data(), dqkv.data(), scale);
    CHECK(fd_error(qkv, dqkv, f, 1e-3f, 300) < 2e-3);
  }
}

TEST(lm_head_loss_backward_matches_finite_differences) {
  std::mt19937 g(6);
  const size_t R = 5, d = 9, V = 13;
  auto h = randv(R * d, g), W = randv(V * d, g), b = randv(V, g);
  std::vector<int32_t> tg = {3, -1, 12, 0, 7};
  auto f = [&] { return lm_head_loss(nullptr, h.data(), R, d, W.data(), b.data(), V, tg.data(), 0.0f, nullptr, nullptr, nullptr); };
  std::vector<float> dh(R * d), dW(V * d, 0.0f), db(V, 0.0f);
  const double nll = lm_head_loss(&test::pool(), h.data(), R, d, W.data(), b.data(), V, tg.data(), 1.0f, dh.data(),
                                  dW.data(), db.data());
  CHECK_NEAR(nll, f(), 1e-9);
  CHECK(fd_error(h, dh, f) < 2e-3);
  CHECK(fd_error(W, dW, f) < 2e-3);
  CHECK(fd_error(b, db, f) < 2e-3);
}

namespace {

model::ModelSpec tiny_gpt2_spec() {
  model::ModelSpec s;
  s.family = "gpt2";
  s.layers = 3, s.d_model = 12, s.n_heads = 3, s.n_kv_heads = 3, s.head_dim = 4, s.d_ff = 19, s.vocab = 17;
  s.max_positions = 16;
  s.norm = model::NormKind::LayerNorm;
  s.positions = model::PositionKind::Learned;
  s.activation = nn::Activation::GeluNew;
  return s;
}

std::map<std::string, model::Buffer> tiny_gpt2_tensors(const model::ModelSpec& s, unsigned seed) {
  std::mt19937 g(seed);
  std::map<std::string, model::Buffer> t;
  const size_t d = s.d_model, f = s.d_ff, W = s.qkv_width();
  auto put = [&](const std::string& k, size_t n, float off = 0) { t[k] = test::rnd(n, g, off); };
  put("tok_emb", s.vocab * d);
  put("pos_emb", s.max_positions * d);
  put("final_norm_w", d, 1), put("final_norm_b", d);
  for (size_t l = 0; l < s.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    put(p + "norm1_w", d, 1), put(p + "norm1_b", d), put(p + "qkv_w", W * d), put(p + "qkv_b", W);
    put(p + "o_w", d * d), put(p + "o_b", d), put(p + "norm2_w", d, 1), put(p + "norm2_b", d);
    put(p + "ff.w_in", f * d), put(p + "ff.b_in", f), put(p + "ff.w_out", d * f), put(p + "ff.b_out", d);
  }
  return t;  // no lm_head_w: tied to tok_emb
}

struct Data {
  std::vector<int32_t> ids, targets;
  size_t B, T;
  TokenBatch batch() const { return TokenBatch{ids.data(), targets.data(), B, T}; }
};

Data token_data(size_t B, size_t T, size_t V, unsigned seed) {
  std::mt19937 g(seed);
  Data d{std::vector<int32_t>(B * T), std::vector<int32_t>(B * T, -1), B, T};
  for (auto& v : d.ids) v = int32_t(g() % V);
  for (size_t b = 0; b < B; ++b)
    for (size_t t = 0; t + 1 < T; ++t) d.targets[b * T + t] = d.ids[b * T + t + 1];
  return d;
}

// Loss equals forward()'s mean NLL; every tensor's gradient matches finite differences.
void check_model(const model::Model& m, const char* what) {
  Data data = token_data(2, 9, m.spec.vocab, 7);
  ParamSet ps = params_from_model(m);
  Activations act;
  const TokenBatch tb = data.batch();
  const double n = double(scored_targets(tb));
  const double loss = loss_and_grad(&test::pool(), m.spec, ps, tb, float(1.0 / n), true, act) / n;
  JobControl ctl(test::pool());
  model::ForwardInput in;
  in.ids = data.ids.data(), in.batch = data.B, in.seq = data.T;
  model::ForwardOptions fo;
  fo.output = model::Output::Nll;
  const auto ref = model::forward(ctl, m, in, fo);
  CHECK_NEAR(loss, ref.nll_sum / double(ref.nll_count), 1e-5);
  auto f = [&] { return loss_and_grad(nullptr, m.spec, ps, tb, 0.0f, false, act) / n; };
  for (auto& p : ps.params) {
    const double e = fd_error(p.w, p.g, f, 3e-3f, 25);
    if (!(e < 2e-2)) std::printf("    %s: %s gradient off by %.3g\n", what, p.name.c_str(), e);
    CHECK(e < 2e-2);
  }
}

// Runs a fine-tune of an absurd batch whose first progress report cancels it: "cancelled" when the cancel
// stopped it after one micro-batch, else what happened (a bad_alloc of per-batch state, say).
std::string outcome_of_cancelled_huge_batch(const std::function<void(JobControl&)>& run, size_t* reports) {
  auto flag = std::make_shared<std::atomic<bool>>(false);
  JobControl ctl(test::pool(), [&](double, double) { ++*reports, flag->store(true); }, flag);
  try {
    run(ctl);
  } catch (const Cancelled&) {
    return "cancelled";
  } catch (const std::exception& e) {
    return e.what();
  }
  return "returned";
}

}  // namespace

TEST(gpt2_model_gradient_matches_finite_differences) {
  auto s = tiny_gpt2_spec();
  check_model(model::build_model(s, tiny_gpt2_tensors(s, 21)), "gpt2");
}

TEST(llama_model_gradient_matches_finite_differences) {
  auto s = test::tiny_llama_spec(16, 4, 2, 21, 19);
  check_model(model::build_model(s, test::tiny_llama_tensors(s, 22)), "llama");
}

TEST(tied_gradient_is_the_sum_over_positions) {
  auto s = tiny_gpt2_spec();
  auto base = std::make_shared<const model::Model>(model::build_model(s, tiny_gpt2_tensors(s, 23)));
  // Layers 1 and 2 share layer 1's FF (one object: a merged window) vs. two separate copies of it.
  auto shared = base->w.layers[1].ff;
  auto tied = model::with_ff(base, {{2, shared}});
  auto copy = std::make_shared<model::FFWeights>(*shared);
  for (auto* t : {&copy->w_in, &copy->b_in, &copy->w_out, &copy->b_out})
    t->buf = std::make_shared<const std::vector<float>>(*t->buf);
  auto untied = model::with_ff(base, {{2, copy}});
  ParamSet pt = params_from_model(*tied), pu = params_from_model(*untied);
  CHECK(pu.params.size() == pt.params.size() + 4);
  CHECK(pt.layers[1].w_in == pt.layers[2].w_in);
  CHECK(pt.params[size_t(pt.layers[1].w_in)].uses == 2);
  Data data = token_data(2, 8, s.vocab, 9);
  Activations act;
  loss_and_grad(&test::pool(), s, pt, data.batch(), 0.1f, true, act);
  loss_and_grad(&test::pool(), s, pu, data.batch(), 0.1f, true, act);
  for (int which = 0; which < 4; ++which) {
    auto pick = [&](const LayerSlots& L) { return which == 0 ? L.w_in : which == 1 ? L.b_in : which == 2 ? L.w_out : L.b_out; };
    const auto& gt = pt.params[size_t(pick(pt.layers[1]))].g;
    const auto& g1 = pu.params[size_t(pick(pu.layers[1]))].g;
    const auto& g2 = pu.params[size_t(pick(pu.layers[2]))].g;
    double err = 0, mag = 0;
    for (size_t i = 0; i < gt.size(); ++i) {
      err = std::max(err, double(std::fabs(gt[i] - (g1[i] + g2[i]))));
      mag = std::max(mag, double(std::fabs(gt[i])));
    }
    CHECK(mag > 0);
    CHECK(err <= 1e-5 * mag + 1e-7);
  }
  // the tied head: tok_emb is one parameter used twice
  CHECK(pt.lm_head_w == pt.tok_emb && pt.params[size_t(pt.tok_emb)].uses == 2);
}

TEST(adamw_lowers_the_loss_on_a_fixed_batch_and_keeps_ties) {
  auto s = test::tiny_llama_spec(16, 4, 2, 21, 19);
  auto base = std::make_shared<const model::Model>(model::build_model(s, test::tiny_llama_tensors(s, 24)));
  auto tied = model::with_ff(base, {{1, base->w.layers[0].ff}, {2, base->w.layers[0].ff}});
  ParamSet ps = params_from_model(*tied);
  Data data = token_data(3, 10, s.vocab, 10);
  const double n = double(scored_targets(data.batch()));
  AdamWOptions o;
  o.lr = 3e-3f;
  Activations act;
  double prev = 1e30;
  for (size_t t = 1; t <= 6; ++t) {
    ps.zero_grad();
    const double loss = loss_and_grad(&test::pool(), s, ps, data.batch(), float(1.0 / n), true, act) / n;
    CHECK(loss < prev);
    prev = loss;
    adamw_step(&test::pool(), ps, o, o.lr, t);
  }
  const float trained_w0 = ps.params[size_t(ps.layers[0].w_in)].w[0];
  auto trained = model_from_params(*tied, std::move(ps));
  CHECK(trained->w.layers[0].ff == trained->w.layers[1].ff && trained->w.layers[1].ff == trained->w.layers[2].ff);
  // the trained weights are moved in, not copied: the model holds exactly what training left
  CHECK(trained->w.layers[0].ff->w_in.data()[0] == trained_w0);
  CHECK(trained->w.layers[0].ff->w_in.buf != tied->w.layers[0].ff->w_in.buf);
  CHECK(trained->w.layers[0].ff->w_in.data()[0] != tied->w.layers[0].ff->w_in.data()[0]);
}

TEST(finetune_runs_and_keeps_the_tie) {
  auto s = tiny_gpt2_spec();
  auto base = std::make_shared<const model::Model>(model::build_model(s, tiny_gpt2_tensors(s, 25)));
  auto tied = model::with_ff(base, {{2, base->w.layers[1].ff}});
  std::vector<int32_t> tokens(400);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7 + i / 5) % s.vocab);  // a learnable pattern
  std::vector<int32_t> val(tokens.begin(), tokens.begin() + 3 * 12);
  TrainOptions o;
  o.steps = 12, o.batch = 4, o.seq = 12, o.micro = 3, o.seed = 5;
  o.adamw.lr = 1e-2f;
  JobControl ctl(test::pool());
  size_t calls = 0;
  auto r = finetune(ctl, *tied, tokens, val, 12, o, [&](const StepLog&) { ++calls; });
  CHECK(calls == 12 && r.log.size() == 12);
  CHECK(r.val_after < r.val_before);
  CHECK(r.model->w.layers[1].ff == r.model->w.layers[2].ff);
  CHECK(r.model->w.lm_head_w.buf == r.model->w.tok_emb.buf);
}

// The windows of a step are drawn micro-batch by micro-batch: the same windows, so the same losses, whatever
// the micro-batch size.
TEST(finetune_data_does_not_depend_on_the_micro_batch) {
  auto s = tiny_gpt2_spec();
  const model::Model m = model::build_model(s, tiny_gpt2_tensors(s, 26));
  std::vector<int32_t> tokens(300);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 11 + i / 3) % s.vocab);
  std::vector<std::vector<double>> losses;
  for (size_t micro : {1, 2, 5}) {
    TrainOptions o;
    o.steps = 3, o.batch = 5, o.seq = 10, o.micro = micro, o.seed = 9;
    o.adamw.lr = 1e-2f;
    JobControl ctl(test::pool());
    auto r = finetune(ctl, m, tokens, {}, 0, o, nullptr);
    losses.emplace_back();
    for (const auto& lg : r.log) losses.back().push_back(lg.loss);
  }
  for (size_t k = 1; k < losses.size(); ++k)
    for (size_t i = 0; i < losses[0].size(); ++i) CHECK_NEAR(losses[k][i], losses[0][i], 1e-4 * std::abs(losses[0][i]));
}

// A batch far beyond memory (2^43 sequences) costs one micro-batch's memory, and a cancel between micro-batches
// stops the step: the step's window offsets used to be allocated up front (8 bytes per sequence, bad_alloc here;
// 8 GB for a batch of 1e9, filled before the first cancellation check).
TEST(finetune_huge_batch_is_bounded_by_the_micro_batch_and_cancels_between_them) {
  auto s = tiny_gpt2_spec();
  const model::Model m = model::build_model(s, tiny_gpt2_tensors(s, 27));
  std::vector<int32_t> tokens(100);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i % s.vocab);
  TrainOptions o;
  o.steps = 1, o.batch = size_t(1) << 43, o.seq = 8, o.micro = 2;
  size_t reports = 0;
  const std::string outcome = outcome_of_cancelled_huge_batch([&](JobControl& ctl) { finetune(ctl, m, tokens, {}, 0, o, nullptr); }, &reports);
  if (outcome != "cancelled") std::printf("    outcome: %s\n", outcome.c_str());
  CHECK(outcome == "cancelled");
  CHECK(reports == 1);  // one micro-batch ran, the cancel stopped the next
}


namespace {

// A tiny ViT: 3 channels, 10×15 images in 5×5 patches (6 patches + CLS), pre-LN, erf GELU, classifier on CLS.
model::ModelSpec tiny_vit_spec() {
  model::ModelSpec s;
  s.family = "vit";
  s.layers = 2, s.d_model = 12, s.n_heads = 3, s.n_kv_heads = 3, s.head_dim = 4, s.d_ff = 19;
  s.input = model::InputKind::Patches;
  s.channels = 3, s.image_h = 10, s.image_w = 15, s.patch = 5;
  s.max_positions = 1 + s.patches();
  s.norm = model::NormKind::LayerNorm;
  s.norm_eps = 1e-12f;
  s.positions = model::PositionKind::Learned;
  s.activation = nn::Activation::GeluErf;
  s.causal = false;
  s.head = model::HeadKind::Classifier;
  s.num_labels = 5;
  return s;
}

std::map<std::string, model::Buffer> tiny_vit_tensors(const model::ModelSpec& s, unsigned seed) {
  std::mt19937 g(seed);
  std::map<std::string, model::Buffer> t;
  const size_t d = s.d_model, f = s.d_ff, W = s.qkv_width();
  auto put = [&](const std::string& k, size_t n, float off = 0) { t[k] = test::rnd(n, g, off); };
  put("patch_w", d * s.patch_dim()), put("patch_b", d), put("cls_token", d);
  put("pos_emb", s.max_positions * d);
  put("final_norm_w", d, 1), put("final_norm_b", d);
  put("classifier_w", s.num_labels * d), put("classifier_b", s.num_labels);
  for (size_t l = 0; l < s.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    put(p + "norm1_w", d, 1), put(p + "norm1_b", d), put(p + "qkv_w", W * d), put(p + "qkv_b", W);
    put(p + "o_w", d * d), put(p + "o_b", d), put(p + "norm2_w", d, 1), put(p + "norm2_b", d);
    put(p + "ff.w_in", f * d), put(p + "ff.b_in", f), put(p + "ff.w_out", d * f), put(p + "ff.b_out", d);
  }
  return t;
}

struct Images {
  std::vector<float> pixels;
  std::vector<int32_t> labels;
  ImageBatch batch() const { return ImageBatch{pixels.data(), labels.data(), labels.size()}; }
};

Images image_data(const model::ModelSpec& s, size_t B, unsigned seed) {
  std::mt19937 g(seed);
  Images im{randv(B * s.channels * s.image_h * s.image_w, g, 1.0f), std::vector<int32_t>(B)};
  for (auto& l : im.labels) l = int32_t(g() % s.num_labels);
  return im;
}

// Mean cross-entropy of forward()'s logits (the inference path the train forward must agree with).
double forward_cross_entropy(const model::Model& m, const Images& im, size_t* correct) {
  JobControl ctl(test::pool());
  model::ForwardInput in;
  in.pixels = im.pixels.data(), in.batch = im.labels.size(), in.seq = 1 + m.spec.patches();
  const auto r = model::forward(ctl, m, in, model::ForwardOptions{});
  const size_t NL = m.spec.num_labels;
  double sum = 0;
  for (size_t b = 0; b < im.labels.size(); ++b) {
    const float* lr = r.logits.data() + b * NL;
    const float mx = *std::max_element(lr, lr + NL);
    double z = 0;
    for (size_t j = 0; j < NL; ++j) z += std::exp(double(lr[j]) - mx);
    sum += mx + std::log(z) - lr[im.labels[b]];
    *correct += size_t(std::max_element(lr, lr + NL) - lr) == size_t(im.labels[b]);
  }
  return sum / double(im.labels.size());
}

}  // namespace

TEST(vit_model_gradient_matches_finite_differences_and_loss_equals_forward) {
  auto s = tiny_vit_spec();
  const model::Model m = model::build_model(s, tiny_vit_tensors(s, 41));
  const Images im = image_data(s, 3, 42);
  ParamSet ps = params_from_model(m);
  CHECK(ps.patch_w != kNone && ps.cls_token != kNone && ps.classifier_w != kNone && ps.pos_emb != kNone);
  Activations act;
  const double n = double(im.labels.size());
  size_t correct = 0, ref_correct = 0;
  const double loss = image_loss_and_grad(&test::pool(), s, ps, im.batch(), float(1.0 / n), true, act, &correct) / n;
  CHECK_NEAR(loss, forward_cross_entropy(m, im, &ref_correct), 1e-5);
  CHECK(correct == ref_correct);
  auto f = [&] { return image_loss_and_grad(nullptr, s, ps, im.batch(), 0.0f, false, act) / n; };
  for (auto& p : ps.params) {
    const double e = fd_error(p.w, p.g, f, 3e-3f, 25);
    if (!(e < 2e-2)) std::printf("    vit: %s gradient off by %.3g\n", p.name.c_str(), e);
    CHECK(e < 2e-2);
  }
}

TEST(vit_finetune_lowers_the_validation_loss_and_keeps_the_tie) {
  auto s = tiny_vit_spec();
  auto base = std::make_shared<const model::Model>(model::build_model(s, tiny_vit_tensors(s, 43)));
  auto tied = model::with_ff(base, {{1, base->w.layers[0].ff}});
  // a learnable task: the label is which channel is brightest (mod 5 classes over 3 channels → labels 0..2)
  const size_t N = 48, px = s.channels * s.image_h * s.image_w, hw = s.image_h * s.image_w;
  Images im = image_data(s, N, 44);
  for (size_t i = 0; i < N; ++i) {
    const int32_t c = int32_t(i % 3);
    for (size_t k = 0; k < hw; ++k) im.pixels[i * px + size_t(c) * hw + k] += 1.5f;
    im.labels[i] = c;
  }
  const ImageSet train{im.pixels.data(), im.labels.data(), N};
  TrainOptions o;
  o.steps = 15, o.batch = 8, o.micro = 3, o.seed = 5;
  o.adamw.lr = 3e-3f;
  JobControl ctl(test::pool());
  size_t calls = 0;
  auto r = finetune_images(ctl, *tied, train, train, o, [&](const StepLog& lg) {
    ++calls;
    CHECK(lg.images_per_s > 0);
  });
  CHECK(calls == 15 && r.log.size() == 15);
  CHECK(r.val_after < r.val_before);
  CHECK(r.acc_after >= r.acc_before);
  CHECK(r.model->w.layers[0].ff == r.model->w.layers[1].ff);
  CHECK(r.model->w.patch_w.buf != tied->w.patch_w.buf);
  // the trained model's inference forward agrees with the trainer's own evaluation
  ParamSet ps = params_from_model(*r.model);
  const ImageEval e = evaluate_images(&test::pool(), s, ps, train, 7);
  size_t correct = 0;
  CHECK_NEAR(e.loss, forward_cross_entropy(*r.model, im, &correct), 1e-5);
  CHECK_NEAR(e.accuracy, double(correct) / double(N), 1e-12);
  CHECK_NEAR(e.loss, r.val_after, 1e-6);
}

// Images: the same two properties as the token trainer's (draws micro-batch by micro-batch).
TEST(vit_finetune_data_does_not_depend_on_the_micro_batch_and_a_huge_batch_cancels) {
  auto s = tiny_vit_spec();
  const model::Model m = model::build_model(s, tiny_vit_tensors(s, 45));
  const size_t N = 7;  // odd: an epoch ends inside a step and inside a micro-batch
  const Images im = image_data(s, N, 46);
  const ImageSet train{im.pixels.data(), im.labels.data(), N};
  std::vector<std::vector<double>> losses;
  for (size_t micro : {1, 3, 5}) {
    TrainOptions o;
    o.steps = 3, o.batch = 5, o.micro = micro, o.seed = 9;
    o.adamw.lr = 3e-3f;
    JobControl ctl(test::pool());
    auto r = finetune_images(ctl, m, train, ImageSet{}, o, nullptr);
    losses.emplace_back();
    for (const auto& lg : r.log) losses.back().push_back(lg.loss);
  }
  for (size_t k = 1; k < losses.size(); ++k)
    for (size_t i = 0; i < losses[0].size(); ++i) CHECK_NEAR(losses[k][i], losses[0][i], 1e-4 * std::abs(losses[0][i]));

  TrainOptions o;
  o.steps = 1, o.batch = size_t(1) << 43, o.micro = 2;
  size_t reports = 0;
  const std::string outcome = outcome_of_cancelled_huge_batch([&](JobControl& ctl) { finetune_images(ctl, m, train, ImageSet{}, o, nullptr); }, &reports);
  if (outcome != "cancelled") std::printf("    outcome: %s\n", outcome.c_str());
  CHECK(outcome == "cancelled");
  CHECK(reports == 1);
}

TEST_MAIN()
