// Ridge refit core vs a direct float64 normal-equations solve on random odd-sized inputs.
#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/job.h"
#include "core/cholesky.h"
#include "core/gemm.h"
#include "core/ridge.h"
#include "tests/check.h"

namespace {

// Gaussian elimination on the regularised normal equations, all in double.
std::vector<double> reference(const std::vector<float>& H, const std::vector<float>& Y, size_t n, size_t p, size_t m,
                              double lambda_rel) {
  size_t p1 = p + 1;
  std::vector<double> A(p1 * p1, 0), B(p1 * m, 0), row(p1);
  for (size_t r = 0; r < n; ++r) {
    for (size_t i = 0; i < p; ++i) row[i] = H[r * p + i];
    row[p] = 1;
    for (size_t i = 0; i < p1; ++i) {
      for (size_t j = 0; j < p1; ++j) A[i * p1 + j] += row[i] * row[j];
      for (size_t o = 0; o < m; ++o) B[i * m + o] += row[i] * Y[r * m + o];
    }
  }
  double mean = 0;
  for (size_t i = 0; i < p; ++i) mean += A[i * p1 + i];
  double lambda = lambda_rel * mean / double(p);
  for (size_t i = 0; i < p; ++i) A[i * p1 + i] += lambda;
  for (size_t c = 0; c < p1; ++c) {
    size_t piv = c;
    for (size_t r = c + 1; r < p1; ++r)
      if (std::fabs(A[r * p1 + c]) > std::fabs(A[piv * p1 + c])) piv = r;
    for (size_t j = 0; j < p1; ++j) std::swap(A[c * p1 + j], A[piv * p1 + j]);
    for (size_t o = 0; o < m; ++o) std::swap(B[c * m + o], B[piv * m + o]);
    for (size_t r = 0; r < p1; ++r) {
      if (r == c) continue;
      double f = A[r * p1 + c] / A[c * p1 + c];
      for (size_t j = 0; j < p1; ++j) A[r * p1 + j] -= f * A[c * p1 + j];
      for (size_t o = 0; o < m; ++o) B[r * m + o] -= f * B[c * m + o];
    }
  }
  std::vector<double> X(p1 * m);
  for (size_t i = 0; i < p1; ++i)
    for (size_t o = 0; o < m; ++o) X[i * m + o] = B[i * m + o] / A[i * p1 + i];
  return X;
}

}  // namespace

TEST(matches_reference_on_odd_sizes) {
  ffm::ThreadPool pool(3);
  ffm::JobControl ctl(pool);
  std::mt19937 gen(3);
  std::normal_distribution<float> dist;
  // 300 and 261 unknowns cross the solver's 128-wide blocks, 19 and 133 outputs its 4/8-wide tiles and 128-wide tasks
  for (auto [n, p, m] : {std::array<size_t, 3>{4, 1, 1}, {300, 13, 5}, {700, 41, 19}, {900, 300, 19}, {800, 260, 133}}) {
    std::vector<float> H(n * p), Y(n * m);
    for (auto& v : H) v = dist(gen);
    for (auto& v : Y) v = dist(gen);
    std::vector<double> G((p + 1) * (p + 1), 0), C((p + 1) * m, 0), X((p + 1) * m);
    size_t cut = n / 2 + 1;
    ffm::ridge_accumulate(ctl, H.data(), cut, p, Y.data(), m, G.data(), C.data());
    ffm::ridge_accumulate(ctl, H.data() + cut * p, n - cut, p, Y.data() + cut * m, m, G.data(), C.data());
    ffm::ridge_solve(ctl, G.data(), C.data(), p, m, 1e-3, X.data());
    auto want = reference(H, Y, n, p, m, 1e-3);
    for (size_t i = 0; i < X.size(); ++i) CHECK_NEAR(X[i], want[i], 1e-4);
  }
}

// The sums are folded tile by tile (core/cross_tiles.h), never through a full fp32 product: they must equal,
// bit for bit, what sgemm over the same 256-row blocks added into fp64 (the former path, and the one the
// fixtures' numbers were measured on).
TEST(sums_equal_the_sgemm_path_exactly) {
  ffm::ThreadPool pool(3);
  ffm::JobControl ctl(pool);
  std::mt19937 gen(9);
  std::normal_distribution<float> dist;
  // the first four go through sgemm (small products), the last two through the tiles
  for (auto [n, p, m] : {std::array<size_t, 3>{1, 1, 1}, {40, 3, 2}, {257, 13, 5}, {600, 241, 19}, {300, 1031, 64}, {257, 700, 1600}}) {
    std::vector<float> H(n * p), Y(n * m);
    for (auto& v : H) v = dist(gen);
    for (auto& v : Y) v = dist(gen);
    std::vector<double> G((p + 1) * (p + 1), 0), C((p + 1) * m, 0);
    ffm::ridge_accumulate(ctl, H.data(), n, p, Y.data(), m, G.data(), C.data());
    std::vector<double> G2((p + 1) * (p + 1), 0), C2((p + 1) * m, 0);
    std::vector<float> hh(p * p), hy(p * m);
    for (size_t r0 = 0; r0 < n; r0 += 256) {
      const size_t rows = std::min<size_t>(256, n - r0);
      ffm::sgemm(&pool, true, false, p, p, rows, 1.f, H.data() + r0 * p, p, H.data() + r0 * p, p, 0.f, hh.data(), p);
      ffm::sgemm(&pool, true, false, p, m, rows, 1.f, H.data() + r0 * p, p, Y.data() + r0 * m, m, 0.f, hy.data(), m);
      for (size_t i = 0; i < p; ++i) {
        for (size_t j = 0; j < p; ++j) G2[i * (p + 1) + j] += hh[i * p + j];
        for (size_t j = 0; j < m; ++j) C2[i * m + j] += hy[i * m + j];
      }
    }
    size_t differ = 0;
    for (size_t i = 0; i < p; ++i) {
      for (size_t j = 0; j < p; ++j) differ += G[i * (p + 1) + j] != G2[i * (p + 1) + j];
      for (size_t j = 0; j < m; ++j) differ += C[i * m + j] != C2[i * m + j];
    }
    CHECK(differ == 0);
  }
}

TEST(singular_system_throws) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  size_t p = 3, m = 2, n = 10;
  std::vector<float> H(n * p, 0.f), Y(n * m, 1.f);
  std::vector<double> G((p + 1) * (p + 1), 0), C((p + 1) * m, 0), X((p + 1) * m);
  ffm::ridge_accumulate(ctl, H.data(), n, p, Y.data(), m, G.data(), C.data());
  bool threw = false;
  try {
    ffm::ridge_solve(ctl, G.data(), C.data(), p, m, 0.0, X.data());
  } catch (const ffm::Error& e) {
    threw = e.code() == "SINGULAR_MATRIX";
  }
  CHECK(threw);
}

TEST(every_unit_dead_with_a_ridge_factor_gives_zero_weights_and_the_mean_as_bias) {
  // a layer whose up_proj is all zeros: the relative λ would be 0 (mean diagonal 0) and the system singular
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  const size_t p = 5, m = 3, n = 7;
  std::vector<float> H(n * p, 0.f), Y(n * m);
  for (size_t i = 0; i < Y.size(); ++i) Y[i] = float(i % 5) - 1.5f;
  std::vector<double> G((p + 1) * (p + 1), 0), C((p + 1) * m, 0), X((p + 1) * m, 99);
  ffm::ridge_accumulate(ctl, H.data(), n, p, Y.data(), m, G.data(), C.data());
  ffm::ridge_solve(ctl, G.data(), C.data(), p, m, 1e-3, X.data());
  for (size_t i = 0; i < p * m; ++i) CHECK(X[i] == 0);
  for (size_t o = 0; o < m; ++o) {
    double mean = 0;
    for (size_t r = 0; r < n; ++r) mean += Y[r * m + o];
    CHECK_NEAR(X[p * m + o], mean / double(n), 1e-12);
  }
}

TEST(cancel_stops_accumulation) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  ctl.cancel();
  std::vector<float> H(600 * 4, 1.f), Y(600, 1.f);
  std::vector<double> G(25, 0), C(5, 0);
  bool threw = false;
  try {
    ffm::ridge_accumulate(ctl, H.data(), 600, 4, Y.data(), 1, G.data(), C.data());
  } catch (const ffm::Cancelled&) {
    threw = true;
  }
  CHECK(threw);
}

TEST_MAIN()

// The blocked factor against a plain Cholesky–Banachiewicz in double, on SPD matrices of odd sizes around the
// block width; and the solve against the matrix it inverts (A·X = B back to 1e-9).
TEST(blocked_cholesky_matches_plain) {
  ffm::ThreadPool pool(3);
  ffm::JobControl ctl(pool);
  std::mt19937 gen(5);
  std::normal_distribution<double> dist;
  for (size_t n : {1, 3, 127, 128, 129, 301}) {
    const size_t k = n + 7, m = 11;
    std::vector<double> R(k * n);
    for (auto& v : R) v = dist(gen);
    std::vector<double> A(n * n, 0);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) {
        double s = i == j ? 1.0 : 0.0;
        for (size_t t = 0; t < k; ++t) s += R[t * n + i] * R[t * n + j];
        A[i * n + j] = s;
      }
    std::vector<double> want(n * n, 0);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j <= i; ++j) {
        double s = A[i * n + j];
        for (size_t t = 0; t < j; ++t) s -= want[i * n + t] * want[j * n + t];
        want[i * n + j] = i == j ? std::sqrt(s) : s / want[j * n + j];
      }
    std::vector<double> L = A;
    ffm::cholesky_factor(ctl, L.data(), n, "singular", 0, 1, 2);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j <= i; ++j) CHECK_NEAR(L[i * n + j], want[i * n + j], 1e-9 * (1 + std::fabs(want[i * n + j])));
    std::vector<double> B(n * m), X(n * m);
    for (auto& v : B) v = dist(gen);
    X = B;
    ffm::cholesky_solve(ctl, L.data(), n, X.data(), m, 1, 2, 2);
    for (size_t i = 0; i < n; ++i)
      for (size_t c = 0; c < m; ++c) {
        double s = 0;
        for (size_t t = 0; t < n; ++t) s += A[i * n + t] * X[t * m + c];
        CHECK_NEAR(s, B[i * m + c], 1e-9 * (1 + std::fabs(B[i * m + c])));
      }
  }
  std::vector<double> bad = {1, 2, 2, 1};  // indefinite
  bool threw = false;
  try {
    ffm::cholesky_factor(ctl, bad.data(), 2, "singular", 0, 1, 1);
  } catch (const ffm::Error& e) {
    threw = e.code() == "SINGULAR_MATRIX";
  }
  CHECK(threw);
}
