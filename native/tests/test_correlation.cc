// CorrelationAccumulator against a plain two-pass fp64 Pearson on random data of odd sizes.
#include <cmath>
#include <random>
#include <vector>

#include "core/correlation.h"
#include "core/error.h"
#include "tests/check.h"
#include "tests/pearson_reference.h"

namespace {

using ffm_test::reference;

// Random activations with a shared component so units correlate (values up to ~±0.9, not only near 0).
std::vector<float> random_layer(std::mt19937& rng, size_t n, size_t d, const std::vector<float>& common, float offset) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n * d);
  for (size_t r = 0; r < n; ++r)
    for (size_t a = 0; a < d; ++a) x[r * d + a] = offset + g(rng) + float(a % 3) * common[r];
  return x;
}

double max_abs_diff(const std::vector<float>& got, const std::vector<double>& want) {
  double m = 0;
  for (size_t k = 0; k < got.size(); ++k) m = std::max(m, std::fabs(double(got[k]) - want[k]));
  return m;
}

void feed(ffm::CorrelationAccumulator& acc, ffm::JobControl& ctl, const std::vector<const float*>& full,
          const std::vector<size_t>& dims, const std::vector<size_t>& batches) {
  size_t r0 = 0;
  for (size_t rows : batches) {
    std::vector<const float*> ptrs(full.size());
    for (size_t l = 0; l < full.size(); ++l) ptrs[l] = full[l] ? full[l] + r0 * dims[l] : nullptr;
    acc.add(ctl, ptrs, rows);
    r0 += rows;
  }
}

}  // namespace

TEST(matches_fp64_reference_on_odd_sizes_and_uneven_batches) {
  ffm::ThreadPool pool(3);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(7);
  const std::vector<size_t> dims = {17, 1, 3, 129};
  const std::vector<size_t> batches = {1, 50, 7, 300, 1, 141};
  size_t n = 0;
  for (size_t b : batches) n += b;
  std::vector<float> common(n);
  std::normal_distribution<float> g;
  for (auto& v : common) v = g(rng);
  std::vector<std::vector<float>> layer;
  for (size_t d : dims) layer.push_back(random_layer(rng, n, d, common, 0.5f));
  std::vector<std::pair<int, int>> pairs = {{0, 3}, {3, 3}, {1, 2}, {2, 0}};
  ffm::CorrelationAccumulator acc(dims, pairs);
  acc.set_block_rows(64);  // several blocks per large batch, one for the small ones
  feed(acc, ctl, {layer[0].data(), layer[1].data(), layer[2].data(), layer[3].data()}, dims, batches);
  CHECK(acc.count() == n);
  for (size_t p = 0; p < pairs.size(); ++p) {
    auto [i, j] = pairs[p];
    auto got = acc.finalize(ctl, p);
    auto want = reference(layer[i], layer[j], n, dims[i], dims[j]);
    CHECK(got.size() == want.size());
    CHECK_NEAR(max_abs_diff(got, want), 0.0, 1e-6);
  }
}

// Σ_b corr(a, b)² · var(b) from the fp64 reference correlation and a two-pass variance.
std::vector<double> explained_reference(const std::vector<float>& x, const std::vector<float>& y, size_t n, size_t dx,
                                        size_t dy) {
  const auto c = reference(x, y, n, dx, dy);
  std::vector<double> var(dy, 0), mean(dy, 0), out(dx, 0);
  for (size_t r = 0; r < n; ++r)
    for (size_t b = 0; b < dy; ++b) mean[b] += y[r * dy + b] / double(n);
  for (size_t r = 0; r < n; ++r)
    for (size_t b = 0; b < dy; ++b) var[b] += (y[r * dy + b] - mean[b]) * (y[r * dy + b] - mean[b]) / double(n);
  for (size_t a = 0; a < dx; ++a)
    for (size_t b = 0; b < dy; ++b) out[a] += c[a * dy + b] * c[a * dy + b] * var[b];
  return out;
}

TEST(explained_variance_matches_fp64_reference) {
  ffm::ThreadPool pool(3);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(5);
  const size_t n = 259, dx = 37, dy = 11;
  std::vector<float> common(n);
  std::normal_distribution<float> g;
  for (auto& v : common) v = g(rng);
  auto x = random_layer(rng, n, dx, common, 2.0f);
  auto y = random_layer(rng, n, dy, common, -40.0f);
  for (size_t r = 0; r < n; ++r) {
    x[r * dx + 4] = 3.0f;   // a constant unit explains nothing
    y[r * dy + 7] = -1.5f;  // a constant target adds nothing
    for (size_t b = 0; b < dy; ++b) y[r * dy + b] *= float(1 + b);  // targets of different scales
  }
  ffm::CorrelationAccumulator acc({dx, dy}, {{0, 1}});
  acc.set_block_rows(50);
  feed(acc, ctl, {x.data(), y.data()}, {dx, dy}, {3, 100, 156});
  const auto got = acc.explained(ctl, 0);
  const auto want = explained_reference(x, y, n, dx, dy);
  CHECK(got.size() == dx);
  CHECK(got[4] == 0.0);
  double worst = 0;
  for (size_t a = 0; a < dx; ++a) worst = std::max(worst, std::fabs(got[a] - want[a]) / (1e-12 + want[a]));
  CHECK_NEAR(worst, 0.0, 1e-5);  // the block products run in fp32
  acc.release(0);
  std::string code = "none";
  try {
    acc.explained(ctl, 0);
  } catch (const ffm::Error& e) {
    code = e.code();
  }
  CHECK(code == "INVALID_STATE");
}

TEST(large_means_stay_accurate) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(11);
  const size_t n = 5000, d = 33;
  std::vector<float> common(n);
  std::normal_distribution<float> g;
  for (auto& v : common) v = g(rng);
  auto x = random_layer(rng, n, d, common, 1000.0f);
  auto y = random_layer(rng, n, d, common, -3000.0f);
  ffm::CorrelationAccumulator acc({d, d}, {{0, 1}, {0, 0}});
  feed(acc, ctl, {x.data(), y.data()}, {d, d}, {1000, 1999, 1, 2000});
  CHECK_NEAR(max_abs_diff(acc.finalize(ctl, 0), reference(x, y, n, d, d)), 0.0, 1e-6);
  CHECK_NEAR(max_abs_diff(acc.finalize(ctl, 1), reference(x, x, n, d, d)), 0.0, 1e-6);
}

TEST(constant_units_give_zero_not_nan) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  const size_t n = 40, d = 5;
  std::vector<float> x(n * d);
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (size_t r = 0; r < n; ++r)
    for (size_t a = 0; a < d; ++a) x[r * d + a] = (a == 1) ? 123.25f : (a == 3 ? 0.0f : g(rng));
  ffm::CorrelationAccumulator acc({d}, {{0, 0}});
  feed(acc, ctl, {x.data()}, {d}, {13, 27});
  auto c = acc.finalize(ctl, 0);
  for (size_t a = 0; a < d; ++a)
    for (size_t b = 0; b < d; ++b) {
      const float v = c[a * d + b];
      CHECK(std::isfinite(v));
      if (a == 1 || a == 3 || b == 1 || b == 3) CHECK(v == 0.0f);
    }
  CHECK_NEAR(c[0], 1.0, 1e-6);
}

TEST(non_finite_batch_is_rejected_whole) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  const size_t n = 30, d = 4;
  std::vector<float> x(n * d), y(n * d);
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  for (auto& v : x) v = g(rng);
  for (auto& v : y) v = g(rng);
  ffm::CorrelationAccumulator acc({d, 7, d}, {{0, 2}});
  feed(acc, ctl, {x.data(), nullptr, y.data()}, {d, 7, d}, {10});
  auto before = acc.finalize(ctl, 0);
  std::vector<float> bad(y.begin() + 10 * d, y.end());
  bad[17] = std::nanf("");
  bool threw = false;
  try {
    acc.add(ctl, {x.data() + 10 * d, nullptr, bad.data()}, 20);
  } catch (const ffm::Error& e) {
    threw = e.code() == "NON_FINITE_ACTIVATIONS" && std::string(e.what()).find("layer 2") != std::string::npos;
  }
  CHECK(threw);
  CHECK(acc.count() == 10);
  auto after = acc.finalize(ctl, 0);
  CHECK(before == after);
}

TEST(cancel_before_a_batch_leaves_it_usable_and_mid_batch_marks_it_broken) {
  ffm::ThreadPool pool(2);
  auto flag = std::make_shared<std::atomic<bool>>(true);
  ffm::JobControl cancelled(pool, {}, flag);
  ffm::JobControl ctl(pool);
  const size_t n = 100, d = 6;
  std::vector<float> x(n * d);
  std::mt19937 rng(9);
  std::normal_distribution<float> g;
  for (auto& v : x) v = g(rng);
  ffm::CorrelationAccumulator acc({d}, {{0, 0}});
  acc.set_block_rows(10);
  bool threw = false;
  try {
    acc.add(cancelled, {x.data()}, n);
  } catch (const ffm::Cancelled&) {
    threw = true;
  }
  CHECK(threw);
  CHECK(!acc.broken());
  acc.add(ctl, {x.data()}, n);
  CHECK_NEAR(max_abs_diff(acc.finalize(ctl, 0), reference(x, x, n, d, d)), 0.0, 1e-6);

  // A progress callback that cancels after the first block: the batch is half in, so the sums are unusable.
  auto flag2 = std::make_shared<std::atomic<bool>>(false);
  ffm::JobControl midway(pool, [flag2](double, double) { flag2->store(true); }, flag2);
  threw = false;
  try {
    acc.add(midway, {x.data()}, n);
  } catch (const ffm::Cancelled&) {
    threw = true;
  }
  CHECK(threw);
  CHECK(acc.broken());
  std::string code;
  try {
    acc.finalize(ctl, 0);
  } catch (const ffm::Error& e) {
    code = e.code();
  }
  CHECK(code == "INVALID_STATE");
}

TEST(bad_arguments_throw_typed_errors) {
  auto code_of = [](auto fn) {
    try {
      fn();
    } catch (const ffm::Error& e) {
      return e.code();
    }
    return std::string("none");
  };
  CHECK(code_of([] { ffm::CorrelationAccumulator({3, 0}, {{0, 0}}); }) == "INVALID_ARGUMENT");
  CHECK(code_of([] { ffm::CorrelationAccumulator({3, 4}, {{0, 2}}); }) == "INVALID_ARGUMENT");
  CHECK(code_of([] { ffm::CorrelationAccumulator({3}, {}); }) == "INVALID_ARGUMENT");
  ffm::ThreadPool pool(1);
  ffm::JobControl ctl(pool);
  ffm::CorrelationAccumulator acc({3, 4}, {{0, 1}});
  CHECK(code_of([&] { acc.finalize(ctl, 0); }) == "INVALID_STATE");
  CHECK(code_of([&] { acc.finalize(ctl, 1); }) == "INVALID_ARGUMENT");
  std::vector<float> x(3);
  CHECK(code_of([&] { acc.add(ctl, {x.data()}, 1); }) == "INVALID_ARGUMENT");
  CHECK(code_of([&] { acc.add(ctl, {x.data(), nullptr}, 1); }) == "INVALID_ARGUMENT");
  // Sums larger than the machine: OUT_OF_MEMORY before any allocation (Linux would grant 4 × 16 GiB of
  // zeroed sums for a width of 2^31 and kill the process while zeroing them). 2^24 × 2^24 doubles is 2 PiB.
  const size_t huge = size_t(1) << 31;
  CHECK(code_of([&] { ffm::CorrelationAccumulator({huge}, {{0, 0}}); }) == "OUT_OF_MEMORY");
  CHECK(code_of([&] { ffm::CorrelationAccumulator({size_t(1) << 24, 3}, {{0, 0}}); }) == "OUT_OF_MEMORY");
  // each pair fits; the open ones together do not (2^17 × 2^17 doubles is 128 GiB: one fits in this count only
  // where the machine has that much, so the check is on the sum of many)
  ffm::CorrelationAccumulator open({size_t(1) << 12}, {{0, 0}});
  CHECK(code_of([&] {
          for (int n = 0; n < (1 << 22); ++n) open.add_pair(0, 0);  // 128 MiB each: at most 4 PiB in all
        }) == "OUT_OF_MEMORY");
}

TEST(pairs_in_flight_match_fixed_pairs_and_free_their_sums) {
  // Layer-major use: pairs opened one at a time, each fed the same batches, finalized and released; the
  // results equal those of one accumulator holding every pair from the start, bit for bit.
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(13);
  const std::vector<size_t> dims = {9, 9, 9};
  const std::vector<size_t> batches = {70, 3, 200};
  size_t n = 0;
  for (size_t b : batches) n += b;
  std::vector<float> common(n);
  std::normal_distribution<float> g;
  for (auto& v : common) v = g(rng);
  std::vector<std::vector<float>> layer;
  for (size_t d : dims) layer.push_back(random_layer(rng, n, d, common, 2.0f));
  const std::vector<const float*> all = {layer[0].data(), layer[1].data(), layer[2].data()};
  const std::vector<std::pair<int, int>> pairs = {{0, 1}, {0, 2}, {2, 1}};
  ffm::CorrelationAccumulator fixed(dims, pairs);
  fixed.set_block_rows(64);
  feed(fixed, ctl, all, dims, batches);

  ffm::CorrelationAccumulator dyn(dims);
  dyn.set_block_rows(64);
  CHECK(dyn.open_pairs() == 0);
  for (size_t k = 0; k < pairs.size(); ++k) {
    const size_t p = dyn.add_pair(pairs[k].first, pairs[k].second);
    CHECK(p == k);
    CHECK(dyn.open_pairs() == 1);
    // only the open pair's layers are needed
    std::vector<const float*> some(3, nullptr);
    some[pairs[k].first] = all[pairs[k].first];
    some[pairs[k].second] = all[pairs[k].second];
    feed(dyn, ctl, some, dims, batches);
    CHECK(dyn.pair_count(p) == n);
    auto got = dyn.finalize(ctl, p);
    CHECK(got == fixed.finalize(ctl, k));
    CHECK_NEAR(max_abs_diff(got, reference(layer[pairs[k].first], layer[pairs[k].second], n, 9, 9)), 0.0, 1e-6);
    dyn.release(p);
    dyn.release(p);  // a no-op
    CHECK(dyn.released(p));
    CHECK(!dyn.used(size_t(pairs[k].first)) || pairs[k].first == pairs[k].second);
  }
  std::string code;
  try {
    dyn.finalize(ctl, 0);
  } catch (const ffm::Error& e) {
    code = e.code();
  }
  CHECK(code == "INVALID_STATE");
  code.clear();
  try {
    dyn.add(ctl, all, 5);  // nothing open
  } catch (const ffm::Error& e) {
    code = e.code();
  }
  CHECK(code == "INVALID_STATE");
}

TEST(a_pair_opened_later_sees_only_later_rows) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(17);
  const size_t n = 90, d = 6;
  std::vector<float> common(n);
  std::normal_distribution<float> g;
  for (auto& v : common) v = g(rng);
  auto x = random_layer(rng, n, d, common, 0.0f);
  auto y = random_layer(rng, n, d, common, 5.0f);
  ffm::CorrelationAccumulator acc({d, d});
  const size_t p0 = acc.add_pair(0, 0);
  acc.add(ctl, {x.data(), nullptr}, 30);
  const size_t p1 = acc.add_pair(0, 1);
  acc.add(ctl, {x.data() + 30 * d, y.data() + 30 * d}, 60);
  CHECK(acc.pair_count(p0) == 90 && acc.pair_count(p1) == 60 && acc.count() == 90);
  CHECK_NEAR(max_abs_diff(acc.finalize(ctl, p0), reference(x, x, n, d, d)), 0.0, 1e-6);
  std::vector<float> x2(x.begin() + 30 * d, x.end()), y2(y.begin() + 30 * d, y.end());
  CHECK_NEAR(max_abs_diff(acc.finalize(ctl, p1), reference(x2, y2, 60, d, d)), 0.0, 1e-6);
  bool threw = false;
  try {
    acc.add(ctl, {x.data(), nullptr}, 1);  // layer 1 is used by an open pair
  } catch (const ffm::Error& e) {
    threw = e.code() == "INVALID_ARGUMENT";
  }
  CHECK(threw);
}

TEST_MAIN()
