// Greedy column selection vs two plain float64 references on random odd-sized inputs:
//  - forward stepwise regression that refits every candidate subset from scratch (Gaussian elimination on the
//    normal equations), at small sizes;
//  - the textbook unblocked pivoted Cholesky (the whole factor kept, every residual updated every step), at
//    sizes where the blocked code crosses many block ends and compactions of its layout (select.cc).
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

std::vector<float> normal(std::mt19937& gen, size_t n) {
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// The sums select reads, G = [H 1]ᵀ[H 1] and C = [H 1]ᵀY, and Σy² for the reference's residuals.
struct Sums {
  std::vector<double> G, C;
  double yy = 0;
};

Sums sums_of(ffm::JobControl& ctl, const std::vector<float>& H, size_t rows, size_t p, const std::vector<float>& Y,
             size_t m) {
  Sums s{std::vector<double>((p + 1) * (p + 1), 0), std::vector<double>((p + 1) * m, 0)};
  ffm::ridge_accumulate(ctl, H.data(), rows, p, Y.data(), m, s.G.data(), s.C.data());
  for (float y : Y) s.yy += double(y) * y;
  return s;
}

}  // namespace

TEST(matches_forward_stepwise_reference) {
  ffm::ThreadPool pool(3);
  ffm::JobControl ctl(pool);
  std::mt19937 gen(7);
  for (auto [rows, p, m, count, forceBias] :
       {std::array<size_t, 5>{50, 7, 3, 5, 1}, {301, 23, 5, 12, 0}, {517, 41, 9, 30, 1}, {1201, 89, 13, 70, 1}}) {
    const auto H = normal(gen, rows * p), noise = normal(gen, rows * m);
    std::vector<float> Y(rows * m);
    // targets depend on a few columns plus noise, so the order of the first picks is well separated
    for (size_t r = 0; r < rows; ++r)
      for (size_t o = 0; o < m; ++o)
        Y[r * m + o] =
            float(0.3 * noise[r * m + o] + (o + 1) * H[r * p + (o % p)] - 0.5 * H[r * p + ((3 * o + 1) % p)] + 0.7);
    const size_t n = p + 1;
    const auto [G, C, yy] = sums_of(ctl, H, rows, p, Y, m);
    std::vector<int32_t> forced;
    if (forceBias) forced.push_back(int32_t(p));
    std::vector<std::vector<int32_t>> runs;
    for (size_t block : {size_t(1), size_t(2), size_t(5), size_t(96)})
      runs.push_back(ffm::greedy_select(ctl, G.data(), C.data(), p, m, forced, count, 0.0, block));

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
    for (const auto& got : runs) {
      CHECK(got.size() == count);
      for (size_t i = 0; i < count; ++i) CHECK(got[i] == S[i]);
    }
  }
}

namespace {

// The unblocked algorithm, written plainly: factor row t for the column taken at step t, residual diagonal d,
// residual targets R updated and their norms recomputed every step. Same gain and stopping rules as select.h.
std::vector<int32_t> plain_select(const std::vector<double>& G, const std::vector<double>& C, size_t p, size_t m,
                                  const std::vector<int32_t>& forced, size_t count, double lambda_rel) {
  const size_t n = p + 1;
  double mean_diag = 0;
  for (size_t i = 0; i < p; ++i) mean_diag += G[i * n + i];
  const double lambda = lambda_rel * mean_diag / double(p);
  std::vector<double> d(n), R(C), L;
  for (size_t i = 0; i < n; ++i) d[i] = G[i * n + i];
  std::vector<char> taken(n, 0);
  std::vector<int32_t> out;
  while (out.size() < count) {
    const size_t t = out.size();
    size_t j = n;
    if (t < forced.size()) {
      j = size_t(forced[t]);
      if (!(d[j] > 1e-10 * G[j * n + j]) || !(d[j] > 0)) break;
    } else {
      double best = -1;
      for (size_t i = 0; i < n; ++i) {
        if (taken[i] || !(d[i] > 1e-10 * G[i * n + i]) || !(d[i] > 0)) continue;
        double rr = 0;
        for (size_t o = 0; o < m; ++o) rr += R[i * m + o] * R[i * m + o];
        const double g = rr / (d[i] + (i < p ? lambda : 0.0));
        if (g > best) best = g, j = i;
      }
      if (j == n) break;
    }
    taken[j] = 1;
    out.push_back(int32_t(j));
    const double root = std::sqrt(d[j]);
    L.resize((t + 1) * n);
    std::vector<double> z(m);
    for (size_t o = 0; o < m; ++o) z[o] = R[j * m + o] / root;
    for (size_t i = 0; i < n; ++i) {
      double v = G[j * n + i];
      for (size_t s = 0; s < t; ++s) v -= L[s * n + j] * L[s * n + i];
      L[t * n + i] = v / root;
    }
    for (size_t i = 0; i < n; ++i) {
      if (taken[i] && i != j) continue;
      const double v = L[t * n + i];
      d[i] -= v * v;
      for (size_t o = 0; o < m; ++o) R[i * m + o] -= v * z[o];
    }
    d[j] = 0;
  }
  return out;
}

}  // namespace

TEST(blocks_and_compactions_match_the_plain_algorithm) {
  ffm::ThreadPool pool(3);
  ffm::JobControl ctl(pool);
  std::mt19937 gen(11);
  // {rows, p, m, count, lambda ×1000}: the second has fewer rows than columns, so the selection stops at the
  // span of the rows (fewer than count); the third is taken almost to the end of its pool
  for (auto [rows, p, m, count, lam] : {std::array<size_t, 5>{700, 301, 17, 250, 0}, {151, 263, 5, 240, 10},
                                        {900, 129, 33, 127, 1}}) {
    auto H = normal(gen, rows * p);
    const auto twin = normal(gen, rows * p), noise = normal(gen, rows * m);
    // pairs of nearly equal columns, as the layers of a window hold: the choice between them is close
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 1; c < p; c += 7) H[r * p + c] = H[r * p + c - 1] + 0.05f * twin[r * p + c];
    std::vector<float> Y(rows * m);
    for (size_t r = 0; r < rows; ++r)
      for (size_t o = 0; o < m; ++o)
        Y[r * m + o] = float(noise[r * m + o] + 0.5 * H[r * p + (5 * o) % p] - H[r * p + (11 * o + 3) % p] + 0.2);
    const Sums sums = sums_of(ctl, H, rows, p, Y, m);
    const std::vector<int32_t> forced{int32_t(p)};
    const auto want = plain_select(sums.G, sums.C, p, m, forced, count, double(lam) / 1000);
    CHECK(rows < p ? want.size() < count : want.size() == count);
    for (size_t block : {size_t(1), size_t(7), size_t(64), size_t(96), size_t(1000)}) {
      const auto got =
          ffm::greedy_select(ctl, sums.G.data(), sums.C.data(), p, m, forced, count, double(lam) / 1000, block);
      CHECK(got.size() == want.size());
      for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) CHECK(got[i] == want[i]);
    }
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
