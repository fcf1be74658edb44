#include "core/cholesky.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dgemm_sub.h"
#include "core/error.h"

namespace ffm {

namespace {

constexpr size_t kNb = 128;   // block width of the factorisation and of the substitutions
constexpr size_t kNc = 128;   // right-hand sides per substitution task
constexpr size_t kRows = 32;  // rows per task of the trailing update

}  // namespace

void cholesky_factor(JobControl& ctl, double* A, size_t n, const char* singular_message, double progress_from,
                     double progress_to, double progress_total) {
  ThreadPool& pool = ctl.pool();
  const DgemmSub sub = dgemm_sub();
  std::vector<double> pt;  // the block column below the diagonal block, transposed (B of the trailing update)
  for (size_t k0 = 0; k0 < n; k0 += kNb) {
    ctl.check();
    const size_t k1 = std::min(n, k0 + kNb), w = k1 - k0;
    // The diagonal block (every earlier block already subtracted from it), row by row.
    for (size_t j = k0; j < k1; ++j) {
      double* Lj = A + j * n;
      double s = Lj[j];
      for (size_t t = k0; t < j; ++t) s -= Lj[t] * Lj[t];
      if (!(s > 0)) throw Error("SINGULAR_MATRIX", singular_message);
      const double d = std::sqrt(s);
      Lj[j] = d;
      for (size_t i = j + 1; i < k1; ++i) {
        double* Li = A + i * n;
        double v = Li[j];
        for (size_t t = k0; t < j; ++t) v -= Li[t] * Lj[t];
        Li[j] = v / d;
      }
    }
    if (k1 == n) break;
    // The block column below it: each row solved against the diagonal block's factor.
    const size_t rest = n - k1;
    pool.parallel_for(rest, 32, [&](size_t b, size_t e) {
      for (size_t i = k1 + b; i < k1 + e; ++i) {
        double* Li = A + i * n;
        for (size_t j = k0; j < k1; ++j) {
          const double* Lj = A + j * n;
          double v = Li[j];
          for (size_t t = k0; t < j; ++t) v -= Li[t] * Lj[t];
          Li[j] = v / Lj[j];
        }
      }
    });
    // The trailing matrix: A[i][j] −= Σ_t L[i][k0+t]·L[j][k0+t] for k1 ≤ j ≤ i. A task of rows [r0, r1) takes
    // columns k1 … r1 − 1; the few right of its diagonal land in the scratch upper triangle.
    pt.resize(w * rest);
    pool.parallel_for(rest, 64, [&](size_t b, size_t e) {
      for (size_t j = b; j < e; ++j)
        for (size_t t = 0; t < w; ++t) pt[t * rest + j] = A[(k1 + j) * n + k0 + t];
    });
    const size_t tasks = (rest + kRows - 1) / kRows;
    pool.parallel_for(tasks, 1, [&](size_t b, size_t e) {
      for (size_t q = b; q < e; ++q) {
        const size_t r0 = k1 + (tasks - 1 - q) * kRows, r1 = std::min(n, r0 + kRows);  // the longest rows first
        sub(r1 - r0, r1 - k1, w, A + r0 * n + k0, n, 1, pt.data(), rest, A + r0 * n + k1, n);
      }
    });
    const double left = double(n - k1) / double(n);
    ctl.progress(progress_from + (progress_to - progress_from) * (1 - left * left * left), progress_total);
  }
  ctl.progress(progress_to, progress_total);
}

void cholesky_solve(JobControl& ctl, const double* L, size_t n, double* B, size_t m, double progress_from,
                    double progress_to, double progress_total) {
  ThreadPool& pool = ctl.pool();
  const DgemmSub sub = dgemm_sub();
  const size_t chunks = (m + kNc - 1) / kNc, blocks = (n + kNb - 1) / kNb;
  // Each task solves kNc right-hand sides through both substitutions; a group of tasks between progress reports.
  const size_t group = std::max<size_t>(1, size_t(pool.size()) * 2);
  for (size_t g0 = 0; g0 < chunks; g0 += group) {
    pool.parallel_for(std::min(group, chunks - g0), 1, [&](size_t b, size_t e) {
      std::vector<double> buf;
      for (size_t q = g0 + b; q < g0 + e; ++q) {
        const size_t c0 = q * kNc, nc = std::min(kNc, m - c0);
        // the task's columns copied out contiguous (rows nc apart, not m: at 4,096 outputs a row of B is 32 KB,
        // and the products would touch a new page at every step)
        buf.resize(n * nc);
        for (size_t i = 0; i < n; ++i) std::copy(B + i * m + c0, B + i * m + c0 + nc, buf.begin() + i * nc);
        double* X = buf.data();
        // forward: L·Z = B, a block of rows at a time (the rows above it subtracted as one product)
        for (size_t blk = 0; blk < blocks; ++blk) {
          ctl.check();
          const size_t i0 = blk * kNb, i1 = std::min(n, i0 + kNb);
          sub(i1 - i0, nc, i0, L + i0 * n, n, 1, X, nc, X + i0 * nc, nc);
          for (size_t i = i0; i < i1; ++i) {
            double* xi = X + i * nc;
            const double* Li = L + i * n;
            for (size_t t = i0; t < i; ++t) {
              const double l = Li[t];
              const double* xt = X + t * nc;
              for (size_t c = 0; c < nc; ++c) xi[c] -= l * xt[c];
            }
            for (size_t c = 0; c < nc; ++c) xi[c] /= Li[i];
          }
        }
        // backward: Lᵀ·X = Z, from the last block up (L's columns are read as Lᵀ's rows)
        for (size_t blk = blocks; blk-- > 0;) {
          ctl.check();
          const size_t i0 = blk * kNb, i1 = std::min(n, i0 + kNb);
          sub(i1 - i0, nc, n - i1, L + i1 * n + i0, 1, n, X + i1 * nc, nc, X + i0 * nc, nc);
          for (size_t i = i1; i-- > i0;) {
            double* xi = X + i * nc;
            for (size_t t = i + 1; t < i1; ++t) {
              const double l = L[t * n + i];
              const double* xt = X + t * nc;
              for (size_t c = 0; c < nc; ++c) xi[c] -= l * xt[c];
            }
            for (size_t c = 0; c < nc; ++c) xi[c] /= L[i * n + i];
          }
        }
        for (size_t i = 0; i < n; ++i) std::copy(buf.begin() + i * nc, buf.begin() + (i + 1) * nc, B + i * m + c0);
      }
    });
    const double done = double(std::min(chunks, g0 + group)) / double(chunks);
    ctl.progress(progress_from + (progress_to - progress_from) * done, progress_total);
  }
}

}  // namespace ffm
