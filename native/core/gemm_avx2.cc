// AVX2 + FMA micro-kernel, 6×16: 12 ymm accumulators, two B vectors and one broadcast per step (15 of the
// 16 ymm registers). Compiled for AVX2 through a target attribute so the rest of the build stays baseline
// x86-64; the driver calls it only after checking the CPU.
#include "core/gemm_kernels.h"

#ifdef FFM_GEMM_X86
#include <immintrin.h>

namespace ffm::gemm_detail {
namespace {

constexpr size_t MR = 6, NR = 16;

#define FFM_FMA_ROW(i, ai)                         \
  do {                                             \
    const __m256 av = _mm256_set1_ps(ai);          \
    c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);    \
    c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);    \
  } while (0)
#define FFM_ALL_ROWS(A)                                                                     \
  FFM_FMA_ROW(0, A(0)); FFM_FMA_ROW(1, A(1)); FFM_FMA_ROW(2, A(2)); FFM_FMA_ROW(3, A(3)); \
  FFM_FMA_ROW(4, A(4)); FFM_FMA_ROW(5, A(5))

__attribute__((target("avx2,fma"))) void micro_avx2(size_t kc, const float* a, size_t a_rs, size_t a_cs, const float* b,
                                                     size_t b_ks, float* c, size_t ldc, size_t mr, size_t nr,
                                                     float alpha, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  if (a_rs == 1) {
    // Packed (or column-contiguous) A: MR floats per k step.
#define FFM_A_COL(i) a[i]
    for (size_t k = 0; k < kc; ++k, a += a_cs, b += b_ks) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
      FFM_ALL_ROWS(FFM_A_COL);
    }
#undef FFM_A_COL
  } else {
    // A rows straight from the caller's row-major matrix; rows past mr alias row 0 (computed, never stored).
    const float* r[MR];
    for (size_t i = 0; i < MR; ++i) r[i] = a + (i < mr ? i : 0) * a_rs;
#define FFM_A_ROW(i) r[i][k]
    for (size_t k = 0; k < kc; ++k, b += b_ks) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
      FFM_ALL_ROWS(FFM_A_ROW);
    }
#undef FFM_A_ROW
  }
  const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256 va = _mm256_set1_ps(alpha);
  if (mr == MR && nr == NR) {
    if (beta == 0.0f) {
      for (size_t i = 0; i < MR; ++i) {
        _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc[i][0]));
        _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc[i][1]));
      }
    } else {
      const __m256 vb = _mm256_set1_ps(beta);
      for (size_t i = 0; i < MR; ++i) {
        float* ci = c + i * ldc;
        _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, acc[i][0], _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
        _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(va, acc[i][1], _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8))));
      }
    }
    return;
  }
  alignas(32) float tile[MR * NR];
  for (size_t i = 0; i < MR; ++i) {
    _mm256_store_ps(tile + i * NR, acc[i][0]);
    _mm256_store_ps(tile + i * NR + 8, acc[i][1]);
  }
  update_edge(tile, NR, c, ldc, mr, nr, alpha, beta);
}

#undef FFM_ALL_ROWS
#undef FFM_FMA_ROW

}  // namespace

const KernelSpec& avx2_kernel() {
  // KC·NR·4 B = 16 KiB of B per micro-panel; NC columns of B (KC×NC·4 B = 512 KiB) stay in L2.
  static const KernelSpec spec{"avx2", MR, NR, /*kc=*/256, /*mc=*/MR * 160, /*nc=*/NR * 32, micro_avx2};
  return spec;
}

}  // namespace ffm::gemm_detail
#endif
