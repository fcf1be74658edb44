#include "core/ridge.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/cholesky.h"
#include "core/cross_tiles.h"
#include "core/gemm.h"
#include "core/large_buffer.h"
#include "core/error.h"
#include "core/finite.h"

namespace ffm {

namespace {
// Rows per block product: large enough for GEMM efficiency, small enough that float sums within a block stay
// accurate (they are moved into the double accumulators after each block).
constexpr size_t kBlock = 256;
// fp32 product sizes (floats) up to which a block goes through sgemm and a plain buffer: 4 MB.
constexpr size_t kSmallFloats = size_t(1) << 20;

}  // namespace

void ridge_check_finite(JobControl& ctl, const float* H, size_t n, size_t p, const float* Y, size_t m, size_t row0) {
  // Summed in, a NaN poisons every later solve of the sums, and the error came only then, naming no batch.
  refuse_non_finite(ctl, H, n, p, "NON_FINITE_INPUT", "refit: the hidden activations", "unit", "; the batch was not added", row0);
  refuse_non_finite(ctl, Y, n, m, "NON_FINITE_INPUT", "refit: the targets", "output", "; the batch was not added", row0);
}

void ridge_accumulate(JobControl& ctl, const float* H, size_t n, size_t p, const float* Y, size_t m, double* G,
                      double* C, size_t row0) {
  ridge_check_finite(ctl, H, n, p, Y, m, row0);  // before any sum changes: the whole call is refused
  const size_t p1 = p + 1;
  ThreadPool& pool = ctl.pool();
  // Small systems: sgemm into block-sized fp32 buffers, then added into the fp64 sums. Large ones: each tile
  // is folded into the sums while in cache (core/cross_tiles.h), because the fp32 product is the problem
  // there: 757 MB at p = 13,760, on fresh pages every call. Both sum each block the same way, bit for bit,
  // except that sgemm takes a C of at most 4 rows in thin K slices; keeping sgemm below the threshold keeps
  // every small system's sums (and the collinear columns select must see as such) exactly as they were.
  const bool tiled = p * std::max(p, m) > kSmallFloats;
  std::vector<float> hh(tiled ? 0 : p * p), hy(tiled ? 0 : p * m);
  for (size_t r0 = 0; r0 < n; r0 += kBlock) {
    ctl.check();
    const size_t rows = std::min(kBlock, n - r0);
    const float* Hb = H + r0 * p;
    const float* Yb = Y + r0 * m;
    if (tiled) {
      accumulate_cross_tiled(ctl, Hb, p, p, Hb, p, p, rows, G, p1);
      accumulate_cross_tiled(ctl, Hb, p, p, Yb, m, m, rows, C, m);
    } else {
      sgemm(&pool, true, false, p, p, rows, 1.f, Hb, p, Hb, p, 0.f, hh.data(), p);
      sgemm(&pool, true, false, p, m, rows, 1.f, Hb, p, Yb, m, 0.f, hy.data(), m);
      pool.parallel_for(p, 16, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) {
          for (size_t j = 0; j < p; ++j) G[i * p1 + j] += hh[i * p + j];
          for (size_t j = 0; j < m; ++j) C[i * m + j] += hy[i * m + j];
        }
      });
    }
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
    if (!std::isfinite(G[i]))
      throw Error("NON_FINITE_INPUT",
                  "refit: the accumulated Gram matrix overflowed (hidden activations beyond about 1e19 square past "
                  "float32's range)");
  for (size_t i = 0; i < p1 * m; ++i)
    if (!std::isfinite(C[i]))
      throw Error("NON_FINITE_INPUT",
                  "refit: the accumulated products of activations and targets overflowed float32's range");
  if (!(lambda_rel >= 0)) throw Error("INVALID_ARGUMENT", "refit: the ridge factor must be ≥ 0");
  double mean_diag = 0;
  for (size_t i = 0; i < p; ++i) mean_diag += G[i * p1 + i];
  mean_diag = p ? mean_diag / double(p) : 0;
  // Every hidden unit zero on every row (a layer whose up_proj is all zeros: a valid model) gives a mean of 0,
  // so a relative λ would be 0 and the system singular, though ridge's answer is plain: W = 0 (HᵀY = 0) and the
  // bias the targets' mean, for any λ > 0. λ = 1 gives exactly that. (Before: SINGULAR_MATRIX ended compress.)
  const double lambda = lambda_rel > 0 && mean_diag == 0 ? 1.0 : lambda_rel * mean_diag;
  LargeVector<double> L(G, G + p1 * p1);  // 1–1.5 GB at 7B width, freed on a pool thread
  for (size_t i = 0; i < p; ++i) L[i * p1 + i] += lambda;
  // progress in flops: p³/3 to factor, 2p²m to substitute
  const double factor = double(p1) / 3.0, total = factor + 2.0 * double(m);
  cholesky_factor(ctl, L.data(), p1,
                  "refit: the least-squares system is singular (hidden units that never vary on the calibration "
                  "data, and a ridge factor of 0); a ridge factor (lambdaRel) above 0 makes it solvable",
                  0, factor, total);
  std::copy(C, C + p1 * m, X);
  cholesky_solve(ctl, L.data(), p1, X, m, factor, total, total);
}

}  // namespace ffm
