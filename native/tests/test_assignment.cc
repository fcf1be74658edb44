#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "core/assignment.h"
#include "tests/check.h"

namespace {

// Best objective over every injective map of the smaller side into the larger one (rows×cols ≤ 8×8).
double brute_force(const std::vector<double>& c, size_t rows, size_t cols, bool maximize) {
  bool tr = rows > cols;
  size_t n = tr ? cols : rows, m = tr ? rows : cols;
  auto at = [&](size_t a, size_t b) { return tr ? c[b * cols + a] : c[a * cols + b]; };
  std::vector<size_t> perm(m);
  std::iota(perm.begin(), perm.end(), 0);
  double best = maximize ? -INFINITY : INFINITY;
  do {
    double s = 0;
    for (size_t a = 0; a < n; ++a) s += at(a, perm[a]);
    best = maximize ? std::max(best, s) : std::min(best, s);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

// Plain shortest augmenting path solver (rows <= cols, minimise) in double with explicit row and column
// duals, the textbook form (Crouse 2016): the oracle for sizes brute force cannot reach.
double sap_reference(const std::vector<double>& c, size_t n, size_t m) {
  std::vector<double> u(n, 0), v(m, 0), dist(m);
  std::vector<int> path(m), col4row(n, -1), row4col(m, -1);
  std::vector<char> sr(n), sc(m);
  for (size_t cur = 0; cur < n; ++cur) {
    std::fill(dist.begin(), dist.end(), INFINITY);
    std::fill(sr.begin(), sr.end(), 0);
    std::fill(sc.begin(), sc.end(), 0);
    size_t i = cur;
    double min_val = 0;
    int sink = -1;
    while (sink < 0) {
      sr[i] = 1;
      size_t best = 0;  // some unscanned column always exists (rows <= cols)
      double lowest = INFINITY;
      for (size_t j = 0; j < m; ++j) {
        if (sc[j]) continue;
        double r = min_val + c[i * m + j] - u[i] - v[j];
        if (r < dist[j]) {
          dist[j] = r;
          path[j] = int(i);
        }
        if (dist[j] < lowest || (dist[j] == lowest && row4col[j] < 0)) {
          lowest = dist[j];
          best = j;
        }
      }
      min_val = lowest;
      sc[best] = 1;
      if (row4col[best] < 0) sink = int(best);
      else i = size_t(row4col[best]);
    }
    u[cur] += min_val;
    for (size_t r = 0; r < n; ++r)
      if (sr[r] && r != cur) u[r] += min_val - dist[size_t(col4row[r])];
    for (size_t j = 0; j < m; ++j)
      if (sc[j]) v[j] -= min_val - dist[j];
    for (int j = sink;;) {
      int r = path[size_t(j)];
      row4col[size_t(j)] = r;
      int prev = col4row[size_t(r)];
      col4row[size_t(r)] = j;
      if (size_t(r) == cur) break;
      j = prev;
    }
  }
  double total = 0;
  for (size_t r = 0; r < n; ++r) total += c[r * m + size_t(col4row[r])];
  return total;
}

bool valid(const ffm::Assignment& a, size_t rows, size_t cols) {
  size_t k = std::min(rows, cols);
  if (a.row_ind.size() != k || a.col_ind.size() != k) return false;
  std::set<int32_t> cs;
  for (size_t i = 0; i < k; ++i) {
    if (i > 0 && a.row_ind[i] <= a.row_ind[i - 1]) return false;
    if (a.row_ind[i] < 0 || size_t(a.row_ind[i]) >= rows || a.col_ind[i] < 0 || size_t(a.col_ind[i]) >= cols)
      return false;
    cs.insert(a.col_ind[i]);
  }
  return cs.size() == k;
}

std::vector<ffm::LapKernel> kernels() {
  std::vector<ffm::LapKernel> out;
  for (auto k : {ffm::LapKernel::Scalar, ffm::LapKernel::Avx2, ffm::LapKernel::Avx512})
    if (ffm::lap_kernel_supported(k)) out.push_back(k);
  return out;
}

std::vector<double> random_matrix(std::mt19937& rng, size_t rows, size_t cols, int kind) {
  std::vector<double> c(rows * cols);
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<int> small(0, 3);
  for (auto& x : c) x = kind == 0 ? u(rng) : kind == 1 ? double(small(rng)) : 0.25;
  return c;
}

}  // namespace

TEST(matches_brute_force_small_all_shapes_and_kernels) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(7);
  for (size_t rows = 1; rows <= 7; ++rows)
    for (size_t cols = 1; cols <= 7; ++cols)
      for (int kind = 0; kind < 3; ++kind)
        for (bool maximize : {false, true}) {
          auto c = random_matrix(rng, rows, cols, kind);
          std::vector<float> cf(c.begin(), c.end());
          std::vector<double> cd(cf.begin(), cf.end());  // the float values, exactly
          double want = brute_force(cd, rows, cols, maximize);
          for (auto k : kernels()) {
            auto a = ffm::linear_sum_assignment(ctl, cf.data(), rows, cols, maximize, k);
            CHECK(valid(a, rows, cols));
            CHECK_NEAR(a.objective, want, 1e-9);
            auto b = ffm::linear_sum_assignment(ctl, cd.data(), rows, cols, maximize, k);
            CHECK(valid(b, rows, cols));
            CHECK_NEAR(b.objective, want, 1e-9);
          }
        }
}

TEST(eight_by_eight_brute_force) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(11);
  for (int t = 0; t < 20; ++t) {
    auto c = random_matrix(rng, 8, 8, t % 2);
    for (bool maximize : {false, true}) {
      auto a = ffm::linear_sum_assignment(ctl, c.data(), 8, 8, maximize);
      CHECK(valid(a, 8, 8));
      CHECK_NEAR(a.objective, brute_force(c, 8, 8, maximize), 1e-12);
    }
  }
}

TEST(matches_reference_sap_on_larger_matrices) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(17);
  for (auto [rows, cols] : {std::pair<size_t, size_t>{150, 150}, {211, 211}, {97, 160}, {160, 97}})
    for (int kind = 0; kind < 3; ++kind)
      for (bool maximize : {false, true}) {
        auto c = random_matrix(rng, rows, cols, kind);
        std::vector<float> cf(c.begin(), c.end());
        // The oracle minimises rows <= cols: give it the (negated, transposed) float values as needed.
        bool tr = rows > cols;
        size_t n = tr ? cols : rows, m = tr ? rows : cols;
        std::vector<double> o(n * m);
        for (size_t i = 0; i < rows; ++i)
          for (size_t j = 0; j < cols; ++j) (tr ? o[j * rows + i] : o[i * cols + j]) = (maximize ? -1 : 1) * double(cf[i * cols + j]);
        double want = (maximize ? -1 : 1) * sap_reference(o, n, m);
        for (auto k : kernels()) {
          auto a = ffm::linear_sum_assignment(ctl, cf.data(), rows, cols, maximize, k);
          CHECK(valid(a, rows, cols));
          CHECK_NEAR(a.objective, want, 1e-9 * std::max(1.0, std::fabs(want)));
        }
      }
}

TEST(kernels_return_identical_assignments) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(3);
  for (size_t n : {13u, 64u, 101u, 257u}) {
    for (int kind = 0; kind < 3; ++kind) {
      auto c = random_matrix(rng, n, n + (kind == 0 ? 3 : 0), kind);
      size_t cols = n + (kind == 0 ? 3 : 0);
      std::vector<float> cf(c.begin(), c.end());
      auto ref = ffm::linear_sum_assignment(ctl, cf.data(), n, cols, true, ffm::LapKernel::Scalar);
      for (auto k : kernels()) {
        auto a = ffm::linear_sum_assignment(ctl, cf.data(), n, cols, true, k);
        CHECK(a.col_ind == ref.col_ind);
        CHECK(a.objective == ref.objective);
      }
    }
  }
}

TEST(constant_and_integer_tied_matrices) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(5);
  for (size_t n : {1u, 2u, 50u, 300u}) {
    std::vector<float> c(n * n, 3.0f);
    auto a = ffm::linear_sum_assignment(ctl, c.data(), n, n, false);
    CHECK(valid(a, n, n));
    CHECK_NEAR(a.objective, 3.0 * double(n), 0);
    // Integer ties: a permutation matrix of zeros among ones has optimum 0.
    std::vector<int> p(n);
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
    std::vector<float> d(n * n, 1.0f);
    for (size_t i = 0; i < n; ++i) d[i * n + size_t(p[i])] = 0.0f;
    auto b = ffm::linear_sum_assignment(ctl, d.data(), n, n, false);
    CHECK(valid(b, n, n));
    CHECK_NEAR(b.objective, 0.0, 0);
    for (size_t i = 0; i < n; ++i) CHECK(b.col_ind[i] == p[i]);
  }
}

TEST(non_finite_is_a_typed_error) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY}) {
    std::vector<float> c(12, 1.0f);
    c[7] = bad;
    bool threw = false;
    try {
      ffm::linear_sum_assignment(ctl, c.data(), 3, 4, false);
    } catch (const ffm::Error& e) {
      threw = e.code() == "NON_FINITE_INPUT" && std::string(e.what()).find("row 1, column 3") != std::string::npos;
    }
    CHECK(threw);
  }
}

TEST(cancelled_job_stops) {
  ffm::ThreadPool pool(2);
  ffm::JobControl ctl(pool);
  ctl.cancel();
  std::vector<float> c(400 * 400, 1.0f);
  bool threw = false;
  try {
    ffm::linear_sum_assignment(ctl, c.data(), 400, 400, false);
  } catch (const ffm::Cancelled&) {
    threw = true;
  }
  CHECK(threw);
}

TEST(empty_matrix) {
  ffm::ThreadPool pool(1);
  ffm::JobControl ctl(pool);
  auto a = ffm::linear_sum_assignment(ctl, static_cast<const float*>(nullptr), 0, 5, true);
  CHECK(a.row_ind.empty() && a.objective == 0.0);
}

TEST_MAIN()
