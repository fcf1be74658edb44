#include "core/dgemm_sub.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

namespace ffm {

namespace {

constexpr size_t kKc = 256;   // depth of one pass of a product; each pass's sums are subtracted in turn
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

}  // namespace

DgemmSub dgemm_sub() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const DgemmSub f = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? gemm_sub_avx2 : gemm_sub_base;
  }();
  return f;
#else
  return gemm_sub_base;
#endif
}

}  // namespace ffm
