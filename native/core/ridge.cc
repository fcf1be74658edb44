#include "core/ridge.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"

namespace ffm {

namespace {
// Rows per sgemm block: large enough for GEMM efficiency, small enough that float sums within a block stay
// accurate (they are moved into the double accumulators after each block).
constexpr size_t kBlock = 256;

double dot(const double* a, const double* b, size_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}
}  // namespace

void ridge_accumulate(JobControl& ctl, const float* H, size_t n, size_t p, const float* Y, size_t m, double* G,
                      double* C) {
  const size_t p1 = p + 1;
  std::vector<float> hh(p * p), hy(p * m);
  ThreadPool& pool = ctl.pool();
  for (size_t r0 = 0; r0 < n; r0 += kBlock) {
    ctl.check();
    const size_t rows = std::min(kBlock, n - r0);
    const float* Hb = H + r0 * p;
    const float* Yb = Y + r0 * m;
    sgemm(&pool, true, false, p, p, rows, 1.f, Hb, p, Hb, p, 0.f, hh.data(), p);
    sgemm(&pool, true, false, p, m, rows, 1.f, Hb, p, Yb, m, 0.f, hy.data(), m);
    pool.parallel_for(p, 16, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) {
        double* g = G + i * p1;
        const float* s = hh.data() + i * p;
        for (size_t j = 0; j < p; ++j) g[j] += s[j];
        double* c = C + i * m;
        const float* t = hy.data() + i * m;
        for (size_t j = 0; j < m; ++j) c[j] += t[j];
      }
    });
    // The bias row/column: sums of H and Y over the block, and the row count.
    for (size_t r = 0; r < rows; ++r) {
      const float* h = Hb + r * p;
      const float* y = Yb + r * m;
      double* grow = G + p * p1;
      for (size_t j = 0; j < p; ++j) grow[j] += h[j];
      double* crow = C + p * m;
      for (size_t j = 0; j < m; ++j) crow[j] += y[j];
    }
    for (size_t j = 0; j < p; ++j) G[j * p1 + p] = G[p * p1 + j];
    G[p * p1 + p] += double(rows);
    ctl.progress(double(r0 + rows), double(n));
  }
}

void ridge_solve(JobControl& ctl, const double* G, const double* C, size_t p, size_t m, double lambda_rel, double* X) {
  const size_t p1 = p + 1;
  for (size_t i = 0; i < p1 * p1; ++i)
    if (!std::isfinite(G[i])) throw Error("NON_FINITE_INPUT", "refit: the accumulated Gram matrix holds NaN or Inf");
  for (size_t i = 0; i < p1 * m; ++i)
    if (!std::isfinite(C[i])) throw Error("NON_FINITE_INPUT", "refit: the accumulated targets hold NaN or Inf");
  if (!(lambda_rel >= 0)) throw Error("INVALID_ARGUMENT", "refit: the ridge factor must be ≥ 0");
  double mean_diag = 0;
  for (size_t i = 0; i < p; ++i) mean_diag += G[i * p1 + i];
  mean_diag = p ? mean_diag / double(p) : 0;
  const double lambda = lambda_rel * mean_diag;

  // Cholesky–Crout, lower factor L row by row (rows of L are contiguous, so every inner loop is a dot of
  // two contiguous rows); the rows below a pivot are independent and split across the pool.
  std::vector<double> L(p1 * p1, 0.0);
  ThreadPool& pool = ctl.pool();
  for (size_t j = 0; j < p1; ++j) {
    ctl.check();
    double* Lj = L.data() + j * p1;
    double a = G[j * p1 + j] + (j < p ? lambda : 0.0) - dot(Lj, Lj, j);
    if (!(a > 0)) {
      throw Error("SINGULAR_MATRIX",
                  "refit: the least-squares system is singular (hidden units that never vary on the calibration "
                  "data); use a larger ridge factor or more calibration tokens");
    }
    const double d = std::sqrt(a);
    Lj[j] = d;
    pool.parallel_for(p1 - j - 1, 32, [&](size_t b, size_t e) {
      for (size_t i = j + 1 + b; i < j + 1 + e; ++i) {
        double* Li = L.data() + i * p1;
        Li[j] = (G[i * p1 + j] - dot(Li, Lj, j)) / d;
      }
    });
    ctl.progress(double(j + 1), double(p1) * 1.25);
  }

  // Forward then backward substitution on panels of kPanel right-hand sides (columns of C) per task: each row
  // of L is read once per panel instead of once per column (one column at a time, the substitutions of a
  // 3,073-unit fit with 768 outputs streamed L from memory 768 times and took three times the factorisation).
  // Each column's sums run in dot()'s order (four partial sums by k mod 4, the tail into the first), so every
  // column comes out bit for bit as solved alone.
  constexpr size_t kPanel = 8;
  pool.parallel_for((m + kPanel - 1) / kPanel, 1, [&](size_t b, size_t e) {
    std::vector<double> Z(p1 * kPanel);  // row i = z_i of the panel's columns
    for (size_t panel = b; panel < e; ++panel) {
      ctl.check();
      const size_t c0 = panel * kPanel, w = std::min(kPanel, m - c0);
      for (size_t i = 0; i < p1; ++i) {
        const double* Li = L.data() + i * p1;
        double s[4][kPanel] = {};
        size_t k = 0;
        for (; k + 4 <= i; k += 4)
          for (size_t q = 0; q < 4; ++q) {
            const double l = Li[k + q];
            const double* zk = Z.data() + (k + q) * kPanel;
            for (size_t c = 0; c < kPanel; ++c) s[q][c] += l * zk[c];
          }
        for (; k < i; ++k) {
          const double l = Li[k];
          const double* zk = Z.data() + k * kPanel;
          for (size_t c = 0; c < kPanel; ++c) s[0][c] += l * zk[c];
        }
        double* zi = Z.data() + i * kPanel;
        for (size_t c = 0; c < kPanel; ++c)
          zi[c] = c < w ? (C[i * m + c0 + c] - ((s[0][c] + s[1][c]) + (s[2][c] + s[3][c]))) / Li[i] : 0.0;
      }
      for (size_t i = p1; i-- > 0;) {
        const double* Li = L.data() + i * p1;
        double x[kPanel];
        double* zi = Z.data() + i * kPanel;
        for (size_t c = 0; c < kPanel; ++c) zi[c] = x[c] = zi[c] / Li[i];
        for (size_t k = 0; k < i; ++k) {
          const double l = Li[k];
          double* zk = Z.data() + k * kPanel;
          for (size_t c = 0; c < kPanel; ++c) zk[c] -= l * x[c];
        }
      }
      for (size_t i = 0; i < p1; ++i)
        for (size_t c = 0; c < w; ++c) X[i * m + c0 + c] = Z[i * kPanel + c];
    }
  });
  ctl.progress(1, 1);
}

}  // namespace ffm
