// The tiled cross-product kernel (core/cross_tiles.h): against an fp64 product on odd sizes whose tiles and
// 256-row slices leave remainders, bit for bit against the sgemm path it replaces, and on cancel.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/cross_tiles.h"
#include "core/error.h"
#include "core/gemm.h"
#include "tests/check.h"

namespace {

std::vector<float> random_matrix(std::mt19937& rng, size_t rows, size_t cols) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> m(rows * cols);
  for (auto& v : m) v = g(rng);
  return m;
}

// acc0 + Σ_r x[r, a]·y[r, b] in fp64 (ld = width).
std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& y, size_t rows, size_t dx,
                              size_t dy, std::vector<double> acc) {
  for (size_t r = 0; r < rows; ++r)
    for (size_t a = 0; a < dx; ++a) {
      const double u = x[r * dx + a];
      for (size_t b = 0; b < dy; ++b) acc[a * dy + b] += u * y[r * dy + b];
    }
  return acc;
}

}  // namespace

TEST(matches_fp64_on_odd_sizes_and_tile_remainders) {
  ffm::ThreadPool pool(3);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(21);
  // widths below, at and past one tile (144 × 256 before rounding to micro-tiles), rows across 256-row slices
  const size_t shapes[][3] = {{1, 1, 1}, {7, 3, 5}, {145, 257, 300}, {300, 17, 513}, {5, 290, 256}, {13, 600, 1}};
  for (const auto& s : shapes) {
    const size_t dx = s[0], dy = s[1], rows = s[2];
    auto x = random_matrix(rng, rows, dx), y = random_matrix(rng, rows, dy);
    std::vector<double> acc(dx * dy);
    for (size_t k = 0; k < acc.size(); ++k) acc[k] = 0.25 * double(k % 7);  // folded into, not overwritten
    auto want = reference(x, y, rows, dx, dy, acc);
    ffm::accumulate_cross_tiled(ctl, x.data(), dx, dx, y.data(), dy, dy, rows, acc.data(), dy);
    double err = 0;
    for (size_t k = 0; k < acc.size(); ++k) err = std::max(err, std::fabs(acc[k] - want[k]) / std::sqrt(double(rows)));
    CHECK_NEAR(err, 0.0, 1e-5);  // fp32 partial sums of ≤ 256 unit-variance products per slice
  }
}

TEST(leading_dimensions_and_a_sub_block_of_the_output) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(5);
  const size_t rows = 40, ldx = 50, dx = 33, ldy = 20, dy = 19, ld_acc = 25;
  auto x = random_matrix(rng, rows, ldx), y = random_matrix(rng, rows, ldy);
  std::vector<double> acc(dx * ld_acc, -1.0);
  ffm::accumulate_cross_tiled(ctl, x.data(), ldx, dx, y.data(), ldy, dy, rows, acc.data(), ld_acc);
  for (size_t a = 0; a < dx; ++a) {
    for (size_t b = 0; b < dy; ++b) {
      double want = -1.0;
      for (size_t r = 0; r < rows; ++r) want += double(x[r * ldx + a]) * y[r * ldy + b];
      CHECK_NEAR(acc[a * ld_acc + b], want, 1e-4);
    }
    for (size_t b = dy; b < ld_acc; ++b) CHECK(acc[a * ld_acc + b] == -1.0);  // padding untouched
  }
}

TEST(equals_the_sgemm_path_bit_for_bit) {
  // What the accumulator did before the tiles: sgemm in 256-row slices with beta = 1, then one fp64 add.
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(8);
  const size_t dx = 301, dy = 275, rows = 700;
  auto x = random_matrix(rng, rows, dx), y = random_matrix(rng, rows, dy);
  std::vector<float> prod(dx * dy);
  for (size_t r0 = 0; r0 < rows; r0 += 256)
    ffm::sgemm(&pool, true, false, dx, dy, std::min<size_t>(256, rows - r0), 1.0f, x.data() + r0 * dx, dx,
               y.data() + r0 * dy, dy, r0 == 0 ? 0.0f : 1.0f, prod.data(), dy);
  std::vector<double> acc(dx * dy, 0.0);
  ffm::accumulate_cross_tiled(ctl, x.data(), dx, dx, y.data(), dy, dy, rows, acc.data(), dy);
  size_t differ = 0;
  for (size_t k = 0; k < acc.size(); ++k) differ += acc[k] != double(prod[k]);
  CHECK(differ == 0);
}

TEST(cancel_throws_cancelled) {
  ffm::ThreadPool pool(2);
  auto flag = std::make_shared<std::atomic<bool>>(true);
  ffm::JobControl ctl(pool, {}, flag);
  std::vector<float> x(64 * 300, 1.0f);
  std::vector<double> acc(300 * 300, 0.0);
  bool threw = false;
  try {
    ffm::accumulate_cross_tiled(ctl, x.data(), 300, 300, x.data(), 300, 300, 64, acc.data(), 300);
  } catch (const ffm::Cancelled&) {
    threw = true;
  }
  CHECK(threw);
}

TEST_MAIN()
