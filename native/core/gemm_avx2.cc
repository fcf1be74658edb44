// AVX2 + FMA micro-kernel, 6×16: 12 ymm accumulators, two B vectors and one broadcast per step (15 of the
// 16 ymm registers). Compiled for AVX2 through a target attribute so the rest of the build stays baseline
// x86-64; the driver calls it only after checking the CPU.
//
// The body is a template over the number of live rows R ≤ 6, so an edge tile (or a short M) costs R/6 of a
// full one; partial columns use masked loads and stores.
#include "core/gemm_kernels.h"

#ifdef FFM_GEMM_X86
#include <immintrin.h>

namespace ffm::gemm_detail {
namespace {

constexpr size_t MR = 6, NR = 16;

template <int R>
__attribute__((target("avx2,fma"), always_inline)) inline void tile_avx2(size_t kc, const float* a, size_t a_rs,
                                                                        size_t a_cs, const float* b, size_t b_ks,
                                                                        float* c, size_t ldc, size_t nr, float alpha,
                                                                        float beta) {
  __m256 acc0[R], acc1[R];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  if (a_rs == 1) {
    // Packed (or column-contiguous) A: R of the MR floats of each k step are live.
    for (size_t k = 0; k < kc; ++k, a += a_cs, b += b_ks) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
      for (int i = 0; i < R; ++i) {
        const __m256 av = _mm256_broadcast_ss(a + i);
        acc0[i] = _mm256_fmadd_ps(av, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(av, b1, acc1[i]);
      }
    }
  } else {
    // A rows straight from the caller's row-major matrix.
    for (size_t k = 0; k < kc; ++k, a += a_cs, b += b_ks) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
      for (int i = 0; i < R; ++i) {
        const __m256 av = _mm256_broadcast_ss(a + i * a_rs);
        acc0[i] = _mm256_fmadd_ps(av, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(av, b1, acc1[i]);
      }
    }
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (nr == NR) {
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(va, acc0[i]), r1 = _mm256_mul_ps(va, acc1[i]);
      if (beta != 0.0f) {  // beta == 0: C is not read (it may hold NaN)
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
      }
      _mm256_storeu_ps(ci, r0);
      _mm256_storeu_ps(ci + 8, r1);
    }
    return;
  }
  // Lane j of the masks is live when j < nr (resp. 8 + j < nr); masked lanes are neither read nor written.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(nr)), lane);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(nr) - 8), lane);
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    __m256 r0 = _mm256_mul_ps(va, acc0[i]), r1 = _mm256_mul_ps(va, acc1[i]);
    if (beta != 0.0f) {
      r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, m0), r0);
      r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, m1), r1);
    }
    _mm256_maskstore_ps(ci, m0, r0);
    _mm256_maskstore_ps(ci + 8, m1, r1);
  }
}

__attribute__((target("avx2,fma"))) void micro_avx2(size_t kc, const float* a, size_t a_rs, size_t a_cs, const float* b,
                                                     size_t b_ks, float* c, size_t ldc, size_t mr, size_t nr,
                                                     float alpha, float beta) {
  switch (mr) {
#define FFM_CASE(r) \
  case r: return tile_avx2<r>(kc, a, a_rs, a_cs, b, b_ks, c, ldc, nr, alpha, beta);
    FFM_CASE(1) FFM_CASE(2) FFM_CASE(3) FFM_CASE(4) FFM_CASE(5) FFM_CASE(6)
#undef FFM_CASE
    default: return;
  }
}

}  // namespace

const KernelSpec& avx2_kernel() {
  // KC·NR·4 B = 16 KiB of B per micro-panel; NC columns of B (KC×NC·4 B = 512 KiB) stay in L2.
  static const KernelSpec spec{"avx2", MR, NR, /*kc=*/256, /*mc=*/MR * 160, /*nc=*/NR * 32, micro_avx2};
  return spec;
}

}  // namespace ffm::gemm_detail
#endif
