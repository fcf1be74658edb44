// The forward pass's contracts on a small random LLaMA-style model (RMSNorm, rotary, GQA, SwiGLU): FF
// capture with a feature mask, layer-range composition, NLL vs logits, FF views, typed errors, cancel.
// (Numerical agreement with Hugging Face is tested in jest against the fixtures.)
#include <cmath>
#include <memory>
#include <random>

#include "core/error.h"
#include "core/model/forward.h"
#include "core/thread_pool.h"
#include "tests/check.h"
#include "tests/tiny_model.h"

using namespace ffm;
using namespace ffm::model;

namespace {
using test::pool;
using Recorder = test::CaptureCopy;

ModelSpec tiny_spec() { return test::tiny_llama_spec(24, 6, 2, 19, 29); }
std::map<std::string, Buffer> tiny_tensors(const ModelSpec& s) { return test::tiny_llama_tensors(s, 42); }

const size_t B = 2, T = 9;
std::vector<int32_t> ids() {
  std::vector<int32_t> v(B * T);
  for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t((i * 7 + 3) % 29);
  return v;
}
// The B×T batch of `x` (which must outlive it).
ForwardInput batch_of(const std::vector<int32_t>& x) {
  ForwardInput in;
  in.ids = x.data();
  in.batch = B;
  in.seq = T;
  return in;
}
}  // namespace

TEST(capture_compacts_feature_rows_and_is_called_once) {
  ModelSpec s = tiny_spec();
  Model m = build_model(s, tiny_tensors(s));
  auto x = ids();
  JobControl ctl(pool());
  ForwardInput in = batch_of(x);
  Recorder all(s.d_ff), some(s.d_ff);
  ForwardOptions o;
  o.output = Output::Hidden;
  o.capture_layers = {0, 2};
  o.capture = &all;
  forward(ctl, m, in, o);
  std::vector<uint8_t> fm(B * T, 0);
  fm[1] = fm[5] = fm[T + 8] = 1;
  o.feature_mask = fm.data();
  o.capture = &some;
  forward(ctl, m, in, o);
  CHECK(all.calls == 1 && some.calls == 1);
  CHECK(all.rows == B * T && some.rows == 3);
  const size_t keep[3] = {1, 5, T + 8};
  for (size_t li = 0; li < 2; ++li)
    for (size_t i = 0; i < 3; ++i)
      for (size_t j = 0; j < s.d_ff; ++j) CHECK(some.data[li][i * s.d_ff + j] == all.data[li][keep[i] * s.d_ff + j]);
}

// The captured FF input is what the first FF matrix read: X·W_inᵀ (in double) gives the captured
// pre-activation of the same rows, with and without a feature mask.
TEST(ff_inputs_are_what_w_in_reads) {
  ModelSpec s = tiny_spec();
  auto tensors = tiny_tensors(s);
  Model m = build_model(s, tensors);
  auto x = ids();
  JobControl ctl(pool());
  ForwardInput in = batch_of(x);
  std::vector<uint8_t> fm(B * T, 0);
  fm[0] = fm[4] = fm[T + 3] = fm[T + 8] = 1;
  for (const uint8_t* mask : {static_cast<const uint8_t*>(nullptr), static_cast<const uint8_t*>(fm.data())}) {
    Recorder pre(s.d_ff);
    ForwardOptions o;
    o.output = Output::Hidden;
    o.feature_mask = mask;
    o.capture_layers = {2, 0};
    o.input_layers = {0, 2};
    o.capture = &pre;
    auto r = forward(ctl, m, in, o);
    const size_t rows = mask ? 4 : B * T;
    CHECK(r.ff_inputs.size() == 2 && pre.rows == rows);
    for (size_t li = 0; li < 2; ++li) {
      const size_t layer = o.input_layers[li];
      CHECK(r.ff_inputs[li].size() == rows * s.d_model);
      const auto& w_in = *tensors["layers." + std::to_string(layer) + ".ff.w_in"];
      const auto& u = pre.data[layer == 2 ? 0 : 1];
      for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < s.d_ff; ++j) {
          double acc = 0;
          for (size_t c = 0; c < s.d_model; ++c) acc += double(r.ff_inputs[li][i * s.d_model + c]) * double(w_in[j * s.d_model + c]);
          CHECK_NEAR(u[i * s.d_ff + j], acc, 1e-4 * (1 + std::fabs(acc)));
        }
    }
  }
  ForwardOptions bad;
  bad.output = Output::Hidden;
  bad.to_layer = 1;
  bad.input_layers = {1};
  std::string code;
  try {
    forward(ctl, m, in, bad);
  } catch (const Error& e) {
    code = e.code();
  }
  CHECK(code == "INVALID_ARGUMENT");
}

TEST(layer_ranges_compose_and_nll_matches_logits) {
  ModelSpec s = tiny_spec();
  Model m = build_model(s, tiny_tensors(s));
  auto x = ids();
  JobControl ctl(pool());
  ForwardInput in = batch_of(x);
  ForwardOptions o;
  o.output = Output::Logits;
  auto full = forward(ctl, m, in, o);
  o.output = Output::Hidden;
  o.to_layer = 1;
  auto head = forward(ctl, m, in, o);
  ForwardInput in2 = in;
  in2.hidden = head.hidden.data();
  o.from_layer = 1;
  o.to_layer = SIZE_MAX;
  o.output = Output::Logits;
  auto tail = forward(ctl, m, in2, o);
  for (size_t i = 0; i < full.logits.size(); ++i) CHECK_NEAR(tail.logits[i], full.logits[i], 1e-5);
  o.from_layer = 0;
  o.output = Output::Nll;
  auto nll = forward(ctl, m, in, o);
  CHECK(nll.nll_count == B * (T - 1));
  for (size_t b = 0; b < B; ++b)
    for (size_t t = 0; t + 1 < T; ++t) {
      const float* lr = full.logits.data() + (b * T + t) * s.vocab;
      double mx = -1e30, sum = 0;
      for (size_t j = 0; j < s.vocab; ++j) mx = std::max(mx, double(lr[j]));
      for (size_t j = 0; j < s.vocab; ++j) sum += std::exp(lr[j] - mx);
      CHECK_NEAR(nll.nll[b * (T - 1) + t], mx + std::log(sum) - lr[x[b * T + t + 1]], 1e-4);
    }
}

TEST(ff_views_share_and_permutation_keeps_logits) {
  ModelSpec s = tiny_spec();
  auto base = std::make_shared<const Model>(build_model(s, tiny_tensors(s)));
  const FFWeights& ff = *base->w.layers[1].ff;
  const size_t d = s.d_model, f = s.d_ff;
  std::vector<size_t> perm(f);
  for (size_t i = 0; i < f; ++i) perm[i] = (i * 5 + 2) % f;  // 5 is coprime with 19
  auto rows = [&](const Tensor& w) {
    auto out = std::make_shared<std::vector<float>>(w.size());
    for (size_t i = 0; i < f; ++i) std::copy(w.data() + perm[i] * d, w.data() + (perm[i] + 1) * d, out->data() + i * d);
    return Tensor{out};
  };
  auto p = std::make_shared<FFWeights>();
  p->w_in = rows(ff.w_in);
  p->w_gate = rows(ff.w_gate);
  auto wo = std::make_shared<std::vector<float>>(d * f);
  for (size_t r = 0; r < d; ++r)
    for (size_t i = 0; i < f; ++i) (*wo)[r * f + i] = ff.w_out.data()[r * f + perm[i]];
  p->w_out = Tensor{wo};
  auto view = with_ff(base, {{1, p}, {2, p}});
  CHECK(view->w.layers[1].ff == view->w.layers[2].ff);
  CHECK(view->w.layers[0].ff == base->w.layers[0].ff);
  CHECK(view->w.tok_emb.buf == base->w.tok_emb.buf);
  auto only1 = with_ff(base, {{1, p}});
  auto x = ids();
  JobControl ctl(pool());
  ForwardInput in = batch_of(x);
  ForwardOptions o;
  auto a = forward(ctl, *base, in, o), b = forward(ctl, *only1, in, o);
  for (size_t i = 0; i < a.logits.size(); ++i) CHECK_NEAR(a.logits[i], b.logits[i], 1e-4);
}

// The forward pass installs its job as the thread's CancelScope (its matrix products stop on an abort within a
// layer) for as long as it runs, and restores the one before it.
struct ScopeProbe : model::FFCapture {
  const JobControl* seen = nullptr;
  void on_batch(JobControl&, const std::vector<const float*>&, size_t) override { seen = CancelScope::current(); }
};

TEST(forward_runs_inside_its_jobs_cancel_scope) {
  ModelSpec s = tiny_spec();
  Model m = build_model(s, tiny_tensors(s));
  auto x = ids();
  JobControl ctl(pool());
  ScopeProbe probe;
  ForwardOptions o;
  o.capture_layers = {1};
  o.capture = &probe;
  CHECK(CancelScope::current() == nullptr);
  forward(ctl, m, batch_of(x), o);
  CHECK(probe.seen == &ctl);
  CHECK(CancelScope::current() == nullptr);
}

TEST(typed_errors_and_cancel) {
  ModelSpec s = tiny_spec();
  auto t = tiny_tensors(s);
  auto code_of = [&](const std::function<void()>& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.code();
    }
    return "";
  };
  auto missing = t;
  missing.erase("layers.2.ff.w_gate");
  CHECK(code_of([&] { build_model(s, missing); }) == "TENSOR_NOT_FOUND");
  auto wrong = t;
  wrong["layers.0.o_w"] = std::make_shared<std::vector<float>>(7);
  CHECK(code_of([&] { build_model(s, wrong); }) == "SHAPE_MISMATCH");
  ModelSpec bad = s;
  bad.n_kv_heads = 4;
  CHECK(code_of([&] { build_model(bad, t); }) == "INVALID_CONFIG");
  Model m = build_model(s, t);
  std::vector<int32_t> x(70, 1);
  ForwardInput in;
  in.ids = x.data();
  in.batch = 1;
  in.seq = 70;
  JobControl ctl(pool());
  Model learned = m;
  learned.spec.positions = PositionKind::Learned;  // a 64-row position table
  CHECK(code_of([&] { forward(ctl, learned, in, {}); }) == "SEQUENCE_TOO_LONG");
  x[3] = 29;
  CHECK(code_of([&] { forward(ctl, m, in, {}); }) == "INVALID_ARGUMENT");
  x[3] = 1;
  ctl.cancel();
  bool cancelled = false;
  try {
    forward(ctl, m, in, {});
  } catch (const Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled);
}

TEST_MAIN()
