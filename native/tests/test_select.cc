// Greedy column selection vs a plain float64 forward stepwise regression that refits every candidate
// subset from scratch (Gaussian elimination on the normal equations), on random odd-sized inputs. The last
// size takes 70 of 90 columns, so the factor's layout is compacted many times (select.cc).
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/job.h"
#include "core/ridge.h"
#include "core/select.h"
#include "tests/check.h"

namespace {

// Residual sum of squares of the least-squares fit of Y on the columns S of [H 1], from the exact sums.
double rss(const std::vector<double>& G, const std::vector<double>& C, double yy, size_t n, size_t m,
           const std::vector<int32_t>& S) {
  size_t k = S.size();
  std::vector<double> A(k * k), B(k * m);
  for (size_t a = 0; a < k; ++a) {
    for (size_t b = 0; b < k; ++b) A[a * k + b] = G[size_t(S[a]) * n + size_t(S[b])];
    for (size_t o = 0; o < m; ++o) B[a * m + o] = C[size_t(S[a]) * m + o];
  }
  std::vector<double> B0 = B;
  for (size_t c = 0; c < k; ++c) {
    size_t piv = c;
    for (size_t r = c + 1; r < k; ++r)
      if (std::fabs(A[r * k + c]) > std::fabs(A[piv * k + c])) piv = r;
    for (size_t j = 0; j < k; ++j) std::swap(A[c * k + j], A[piv * k + j]);
    for (size_t o = 0; o < m; ++o) std::swap(B[c * m + o], B[piv * m + o]);
    for (size_t r = 0; r < k; ++r) {
      if (r == c) continue;
      double f = A[r * k + c] / A[c * k + c];
      for (size_t j = 0; j < k; ++j) A[r * k + j] -= f * A[c * k + j];
      for (size_t o = 0; o < m; ++o) B[r * m + o] -= f * B[c * m + o];
    }
  }
  // RSS = yᵀy − Σ_o c_oᵀ x_o for the solution x of the normal equations
  double explained = 0;
  for (size_t a = 0; a < k; ++a)
    for (size_t o = 0; o < m; ++o) explained += B0[a * m + o] * B[a * m + o] / A[a * k + a];
  return yy - explained;
}

}  // namespace

TEST(matches_forward_stepwise_reference) {
  ffm::ThreadPool pool(3);
  ffm::JobControl ctl(pool);
  std::mt19937 gen(7);
  std::normal_distribution<float> dist;
  for (auto [rows, p, m, count, forceBias] :
       {std::array<size_t, 5>{50, 7, 3, 5, 1}, {301, 23, 5, 12, 0}, {517, 41, 9, 30, 1}, {1201, 89, 13, 70, 1}}) {
    std::vector<float> H(rows * p), Y(rows * m);
    for (auto& v : H) v = dist(gen);
    // targets depend on a few columns plus noise, so the order of the first picks is well separated
    for (size_t r = 0; r < rows; ++r)
      for (size_t o = 0; o < m; ++o)
        Y[r * m + o] = float(0.3 * dist(gen) + (o + 1) * H[r * p + (o % p)] - 0.5 * H[r * p + ((3 * o + 1) % p)] + 0.7);
    const size_t n = p + 1;
    std::vector<double> G(n * n, 0), C(n * m, 0);
    ffm::ridge_accumulate(ctl, H.data(), rows, p, Y.data(), m, G.data(), C.data());
    double yy = 0;
    for (float y : Y) yy += double(y) * y;
    std::vector<int32_t> forced;
    if (forceBias) forced.push_back(int32_t(p));
    auto got = ffm::greedy_select(ctl, G.data(), C.data(), p, m, forced, count, 0.0);
    CHECK(got.size() == count);

    std::vector<int32_t> S = forced;
    while (S.size() < count) {
      double best = std::numeric_limits<double>::infinity();
      int32_t pick = -1;
      for (size_t j = 0; j < n; ++j) {
        bool in = false;
        for (int32_t s : S) in |= size_t(s) == j;
        if (in) continue;
        auto T = S;
        T.push_back(int32_t(j));
        double v = rss(G, C, yy, n, m, T);
        if (v < best) best = v, pick = int32_t(j);
      }
      S.push_back(pick);
    }
    for (size_t i = 0; i < count; ++i) CHECK(got[i] == S[i]);
  }
}

TEST(stops_at_the_span_and_checks_arguments) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  // three columns, the third the sum of the first two: only two can be taken
  size_t rows = 40, p = 3, m = 2;
  std::mt19937 gen(1);
  std::normal_distribution<float> dist;
  std::vector<float> H(rows * p), Y(rows * m);
  for (size_t r = 0; r < rows; ++r) {
    H[r * p] = dist(gen);
    H[r * p + 1] = dist(gen);
    H[r * p + 2] = H[r * p] + H[r * p + 1];
    Y[r * m] = dist(gen);
    Y[r * m + 1] = H[r * p];
  }
  std::vector<double> G((p + 1) * (p + 1), 0), C((p + 1) * m, 0);
  ffm::ridge_accumulate(ctl, H.data(), rows, p, Y.data(), m, G.data(), C.data());
  auto got = ffm::greedy_select(ctl, G.data(), C.data(), p, m, {int32_t(p)}, 4, 0.0);
  CHECK(got.size() == 3);
  CHECK(got[0] == int32_t(p));
  bool threw = false;
  try {
    ffm::greedy_select(ctl, G.data(), C.data(), p, m, {5}, 2, 0.0);
  } catch (const ffm::Error& e) {
    threw = std::string(e.code()) == "INVALID_ARGUMENT";
  }
  CHECK(threw);
  G[5] = std::nan("");
  threw = false;
  try {
    ffm::greedy_select(ctl, G.data(), C.data(), p, m, {}, 2, 0.0);
  } catch (const ffm::Error& e) {
    threw = std::string(e.code()) == "NON_FINITE_INPUT";
  }
  CHECK(threw);
}

TEST_MAIN()
