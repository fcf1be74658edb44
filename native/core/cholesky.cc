#include "core/cholesky.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

namespace ffm {

namespace {

constexpr size_t kNb = 128;   // block width of the factorisation and of the substitutions
constexpr size_t kKc = 256;   // depth of one pass of a product; each pass's sums are subtracted in turn
constexpr size_t kNc = 128;   // right-hand sides per substitution task
constexpr size_t kRows = 32;  // rows per task of the trailing update
constexpr size_t kMr = 4;     // rows of a register tile

typedef double v4d __attribute__((vector_size(32)));

__attribute__((always_inline)) inline void edge(size_t kc, const double* a, size_t ars, size_t acs, const double* b,
                                                size_t ldb, double* c, size_t ldc, size_t mr, size_t nr) {
  for (size_t r = 0; r < mr; ++r)
    for (size_t j = 0; j < nr; ++j) {
      double s = 0;
      for (size_t t = 0; t < kc; ++t) s += a[r * ars + t * acs] * b[t * ldb + j];
      c[r * ldc + j] -= s;
    }
}

// A register tile: c[r·ldc + j] −= Σ_{t<kc} ap[t·kMr + r]·b[t·ldb + j] for r < kMr, j < NR, A packed by pack_a.
// Every sum starts from zero and adds its products in t order.

// Baseline: 4×4 tiles in eight SSE2 accumulators (GCC vector types), no fused multiply-add, so a tile gives the
// bits edge() gives.
struct BaseTile {
  static constexpr size_t NR = 4;
  __attribute__((always_inline)) static inline void run(size_t kc, const double* ap, const double* b, size_t ldb,
                                                        double* c, size_t ldc) {
    v4d acc[kMr];
    for (size_t r = 0; r < kMr; ++r) acc[r] = v4d{0, 0, 0, 0};
    for (size_t t = 0; t < kc; ++t) {
      v4d bv;
      std::memcpy(&bv, b + t * ldb, sizeof(v4d));
      for (size_t r = 0; r < kMr; ++r) {
        const double x = ap[t * kMr + r];
        acc[r] += v4d{x, x, x, x} * bv;
      }
    }
    for (size_t r = 0; r < kMr; ++r) {
      v4d cv;
      std::memcpy(&cv, c + r * ldc, sizeof(v4d));
      cv -= acc[r];
      std::memcpy(c + r * ldc, &cv, sizeof(v4d));
    }
  }
};

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
// AVX2 + FMA: 4×8 tiles in eight ymm accumulators, each product added with one rounding (a fused multiply-add),
// so these sums differ from the baseline's in the last bits, as sgemm's kernels differ from each other.
struct FmaTile {
  static constexpr size_t NR = 8;
  // a call per tile (kc steps of eight FMAs): a function of another target cannot be inlined into the driver
  __attribute__((target("avx2,fma"))) static void run(size_t kc, const double* ap, const double* b, size_t ldb,
                                                      double* c, size_t ldc) {
    __m256d acc[kMr][2];
    for (size_t r = 0; r < kMr; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_pd();
    for (size_t t = 0; t < kc; ++t) {
      const __m256d b0 = _mm256_loadu_pd(b + t * ldb), b1 = _mm256_loadu_pd(b + t * ldb + 4);
      for (size_t r = 0; r < kMr; ++r) {
        const __m256d x = _mm256_broadcast_sd(ap + t * kMr + r);
        acc[r][0] = _mm256_fmadd_pd(x, b0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_pd(x, b1, acc[r][1]);
      }
    }
    for (size_t r = 0; r < kMr; ++r)
      for (size_t v = 0; v < 2; ++v)
        _mm256_storeu_pd(c + r * ldc + 4 * v, _mm256_sub_pd(_mm256_loadu_pd(c + r * ldc + 4 * v), acc[r][v]));
  }
};
#endif

// A's rows [0, M) × columns [k0, k0 + kc) copied tile by tile: ap[(it·kc + t)·kMr + r] = a(it·kMr + r, k0 + t),
// zero past M. The tiles then read four contiguous values per step whatever A's layout (the backward
// substitution reads Lᵀ, whose rows are L's columns, a page apart at LLM widths).
__attribute__((always_inline)) inline void pack_a(size_t M, size_t kc, const double* a, size_t ars, size_t acs,
                                                  double* ap) {
  for (size_t i0 = 0, it = 0; i0 < M; i0 += kMr, ++it) {
    double* dst = ap + it * kc * kMr;
    const size_t mr = std::min(kMr, M - i0);
    if (acs == 1) {
      for (size_t r = 0; r < kMr; ++r)
        for (size_t t = 0; t < kc; ++t) dst[t * kMr + r] = r < mr ? a[(i0 + r) * ars + t] : 0.0;
    } else {
      for (size_t t = 0; t < kc; ++t)
        for (size_t r = 0; r < kMr; ++r) dst[t * kMr + r] = r < mr ? a[(i0 + r) * ars + t * acs] : 0.0;
    }
  }
}

// C (M×N) −= A·B over K, A(i, t) = a[i·ars + t·acs], B and C row-major. Single-threaded: callers split C.
template <class Tile>
__attribute__((always_inline)) inline void gemm_sub_impl(size_t M, size_t N, size_t K, const double* a, size_t ars,
                                                         size_t acs, const double* b, size_t ldb, double* c,
                                                         size_t ldc) {
  constexpr size_t NR = Tile::NR;
  std::vector<double> ap(((M + kMr - 1) / kMr) * kMr * std::min(kKc, K));
  for (size_t k0 = 0; k0 < K; k0 += kKc) {
    const size_t kc = std::min(kKc, K - k0);
    pack_a(M, kc, a + k0 * acs, ars, acs, ap.data());
    const double* bk = b + k0 * ldb;
    for (size_t j = 0; j < N; j += NR) {
      const size_t nr = std::min(NR, N - j);
      for (size_t i = 0; i < M; i += kMr) {
        const size_t mr = std::min(kMr, M - i);
        const double* at = ap.data() + (i / kMr) * kc * kMr;
        if (mr == kMr && nr == NR) Tile::run(kc, at, bk + j, ldb, c + i * ldc + j, ldc);
        else edge(kc, at, 1, kMr, bk + j, ldb, c + i * ldc + j, ldc, mr, nr);
      }
    }
  }
}

using GemmSub = void (*)(size_t, size_t, size_t, const double*, size_t, size_t, const double*, size_t, double*, size_t);

void gemm_sub_base(size_t M, size_t N, size_t K, const double* a, size_t ars, size_t acs, const double* b, size_t ldb,
                   double* c, size_t ldc) {
  gemm_sub_impl<BaseTile>(M, N, K, a, ars, acs, b, ldb, c, ldc);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
void gemm_sub_avx2(size_t M, size_t N, size_t K, const double* a, size_t ars, size_t acs, const double* b, size_t ldb,
                   double* c, size_t ldc) {
  gemm_sub_impl<FmaTile>(M, N, K, a, ars, acs, b, ldb, c, ldc);
}
#endif

GemmSub gemm_sub() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const GemmSub f = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? gemm_sub_avx2 : gemm_sub_base;
  }();
  return f;
#else
  return gemm_sub_base;
#endif
}

}  // namespace

void cholesky_factor(JobControl& ctl, double* A, size_t n, const char* singular_message, double progress_from,
                     double progress_to, double progress_total) {
  ThreadPool& pool = ctl.pool();
  const GemmSub sub = gemm_sub();
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
  const GemmSub sub = gemm_sub();
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
