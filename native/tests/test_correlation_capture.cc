// model::CorrelationCapture: the forward pass streaming its FF pre-activations straight into a
// CorrelationAccumulator gives the same correlations as capturing them and adding the copies; it maps
// capture slots to the accumulator's layers whatever the capture order, adds nothing for an all-padding
// batch, and keeps the accumulator's shape checks, non-finite rejection and cancel semantics.
#include <cmath>
#include <limits>
#include <memory>
#include <random>

#include "core/correlation.h"
#include "core/error.h"
#include "core/model/correlation_capture.h"
#include "core/model/forward.h"
#include "core/thread_pool.h"
#include "tests/check.h"
#include "tests/tiny_model.h"

using namespace ffm;
using namespace ffm::model;

namespace {
using test::CaptureCopy;
using test::pool;

ModelSpec tiny_spec() { return test::tiny_llama_spec(16, 4, 4, 13, 23); }

Model tiny_model() { return build_model(tiny_spec(), test::tiny_llama_tensors(tiny_spec(), 7)); }

const size_t B = 3, T = 11;
std::vector<int32_t> ids(int seed) {
  std::vector<int32_t> v(B * T);
  for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t((i * 7 + 3 + size_t(seed) * 5) % 23);
  return v;
}

std::string code_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code();
  } catch (const Cancelled&) {
    return "ABORTED";
  }
  return "";
}
}  // namespace

TEST(direct_equals_copy_then_add_with_masks_and_any_capture_order) {
  Model m = tiny_model();
  const size_t f = m.spec.d_ff;
  const std::vector<std::pair<int, int>> pairs = {{0, 0}, {0, 2}, {2, 2}};
  CorrelationAccumulator direct({f, f, f}, pairs, CorrelationBackend::kCpu);
  CorrelationAccumulator copied({f, f, f}, pairs, CorrelationBackend::kCpu);
  JobControl ctl(pool());
  for (int batch = 0; batch < 3; ++batch) {
    auto x = ids(batch);
    std::vector<uint8_t> mask(B * T, 1);
    for (size_t t = 7; t < T; ++t) mask[T + t] = 0;  // padded second sequence
    std::vector<uint8_t> fmask = mask;                 // (a feature mask replaces the attention mask)
    fmask[2] = 0;                                      // and one real position that is not a feature
    ForwardInput in;
    in.ids = x.data();
    in.batch = B;
    in.seq = T;
    in.attention_mask = mask.data();
    ForwardOptions o;
    o.output = Output::Hidden;
    if (batch == 1) o.feature_mask = fmask.data();
    // layer 1 is captured for someone else; the accumulator's layers come in reverse order
    o.capture_layers = {2, 1, 0};
    CorrelationCapture into(direct, m.spec, o.capture_layers);
    o.capture = &into;
    forward(ctl, m, in, o);
    CaptureCopy copy(f);
    o.capture = &copy;
    forward(ctl, m, in, o);
    CHECK(copy.rows == (batch == 1 ? B * T - 4 - 1 : B * T - 4));
    copied.add(ctl, {copy.data[2].data(), nullptr, copy.data[0].data()}, copy.rows);
    CHECK(direct.count() == copied.count());
  }
  for (size_t p = 0; p < pairs.size(); ++p) {
    auto a = direct.finalize(ctl, p), b = copied.finalize(ctl, p);
    for (size_t i = 0; i < a.size(); ++i) CHECK_NEAR(a[i], b[i], 1e-6);
  }
}

TEST(all_padding_batch_adds_nothing) {
  Model m = tiny_model();
  const size_t f = m.spec.d_ff;
  CorrelationAccumulator acc({f, f, f}, {{0, 1}}, CorrelationBackend::kCpu);
  JobControl ctl(pool());
  auto x = ids(0);
  std::vector<uint8_t> none(B * T, 0);
  ForwardInput in;
  in.ids = x.data();
  in.batch = B;
  in.seq = T;
  ForwardOptions o;
  o.output = Output::Hidden;
  o.feature_mask = none.data();
  o.capture_layers = CorrelationCapture::used_layers(acc);
  CHECK((o.capture_layers == std::vector<size_t>{0, 1}));
  CorrelationCapture into(acc, m.spec, o.capture_layers);
  o.capture = &into;
  CHECK(code_of([&] { forward(ctl, m, in, o); }).empty());
  CHECK(acc.count() == 0);
}

TEST(shape_errors_non_finite_and_cancel) {
  Model m = tiny_model();
  const size_t f = m.spec.d_ff;
  CorrelationAccumulator narrow({f, f - 1, f}, {{0, 1}}, CorrelationBackend::kCpu);
  CorrelationAccumulator short_({f, f}, {{0, 1}}, CorrelationBackend::kCpu);
  CorrelationAccumulator acc({f, f, f}, {{0, 2}}, CorrelationBackend::kCpu);
  CHECK(code_of([&] { CorrelationCapture(narrow, m.spec, {0, 1}); }) == "SHAPE_MISMATCH");
  CHECK(code_of([&] { CorrelationCapture(short_, m.spec, {0, 1}); }) == "SHAPE_MISMATCH");
  CHECK(code_of([&] { CorrelationCapture(acc, m.spec, {0, 1}); }) == "INVALID_ARGUMENT");  // layer 2 not captured

  CorrelationCapture into(acc, m.spec, {0, 2});
  JobControl ctl(pool());
  std::vector<float> a(4 * f, 0.5f), b(4 * f, 0.25f);
  for (size_t i = 0; i < a.size(); ++i) a[i] += float(i % 5), b[i] += float(i % 3);
  b[7] = std::numeric_limits<float>::quiet_NaN();
  CHECK(code_of([&] { into.on_batch(ctl, {a.data(), b.data()}, 4); }) == "NON_FINITE_ACTIVATIONS");
  CHECK(acc.count() == 0);
  b[7] = 1.0f;
  into.on_batch(ctl, {a.data(), b.data()}, 4);
  CHECK(acc.count() == 4);
  JobControl cancelled(pool());
  cancelled.cancel();
  CHECK(code_of([&] { into.on_batch(cancelled, {a.data(), b.data()}, 4); }) == "ABORTED");
  CHECK(acc.count() == 4 && !acc.broken());
}

TEST_MAIN()
