// AVX-512 micro-kernel, 12×32: 24 zmm accumulators, two B vectors per step, A broadcast straight from memory
// (26 of the 32 zmm registers). Compiled for AVX-512F through a target attribute so the rest of the build
// stays baseline x86-64; the driver calls it only after checking the CPU (and the OS's zmm state).
#include "core/gemm_kernels.h"

#ifdef FFM_GEMM_X86
#include <immintrin.h>

namespace ffm::gemm_detail {
namespace {

constexpr size_t MR = 12, NR = 32;

#define FFM_FMA_ROW(i, ai)                      \
  do {                                          \
    const __m512 av = _mm512_set1_ps(ai);       \
    c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0); \
    c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1); \
  } while (0)
#define FFM_ALL_ROWS(A)                                                                                      \
  FFM_FMA_ROW(0, A(0)); FFM_FMA_ROW(1, A(1)); FFM_FMA_ROW(2, A(2)); FFM_FMA_ROW(3, A(3));                  \
  FFM_FMA_ROW(4, A(4)); FFM_FMA_ROW(5, A(5)); FFM_FMA_ROW(6, A(6)); FFM_FMA_ROW(7, A(7));                  \
  FFM_FMA_ROW(8, A(8)); FFM_FMA_ROW(9, A(9)); FFM_FMA_ROW(10, A(10)); FFM_FMA_ROW(11, A(11))

__attribute__((target("avx512f"))) void micro_avx512(size_t kc, const float* a, size_t a_rs, size_t a_cs,
                                                      const float* b, size_t b_ks, float* c, size_t ldc, size_t mr,
                                                      size_t nr, float alpha, float beta) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00,
         c81 = c00, c90 = c00, c91 = c00, c100 = c00, c101 = c00, c110 = c00, c111 = c00;
  if (a_rs == 1) {
    // Packed (or column-contiguous) A: MR floats per k step.
#define FFM_A_COL(i) a[i]
    for (size_t k = 0; k < kc; ++k, a += a_cs, b += b_ks) {
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
      FFM_ALL_ROWS(FFM_A_COL);
    }
#undef FFM_A_COL
  } else {
    // A rows straight from the caller's row-major matrix; rows past mr alias row 0 (computed, never stored).
    const float* r[MR];
    for (size_t i = 0; i < MR; ++i) r[i] = a + (i < mr ? i : 0) * a_rs;
#define FFM_A_ROW(i) r[i][k]
    for (size_t k = 0; k < kc; ++k, b += b_ks) {
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
      FFM_ALL_ROWS(FFM_A_ROW);
    }
#undef FFM_A_ROW
  }
  const __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},   {c30, c31},   {c40, c41},   {c50, c51},
                             {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91}, {c100, c101}, {c110, c111}};
  const __m512 va = _mm512_set1_ps(alpha);
  if (mr == MR && nr == NR) {
    if (beta == 0.0f) {
      for (size_t i = 0; i < MR; ++i) {
        _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, acc[i][0]));
        _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, acc[i][1]));
      }
    } else {
      const __m512 vb = _mm512_set1_ps(beta);
      for (size_t i = 0; i < MR; ++i) {
        float* ci = c + i * ldc;
        _mm512_storeu_ps(ci, _mm512_fmadd_ps(va, acc[i][0], _mm512_mul_ps(vb, _mm512_loadu_ps(ci))));
        _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(va, acc[i][1], _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16))));
      }
    }
    return;
  }
  alignas(64) float tile[MR * NR];
  for (size_t i = 0; i < MR; ++i) {
    _mm512_store_ps(tile + i * NR, acc[i][0]);
    _mm512_store_ps(tile + i * NR + 16, acc[i][1]);
  }
  update_edge(tile, NR, c, ldc, mr, nr, alpha, beta);
}

#undef FFM_ALL_ROWS
#undef FFM_FMA_ROW

}  // namespace

const KernelSpec& avx512_kernel() {
  // A micro-panel (MR×KC·4 B = 12 KiB) stays in L1 while NC/NR B micro-panels stream from the L2-resident
  // B block (KC×NC·4 B = 512 KiB); the MC×KC A block (1.5 MiB) lives in L3.
  static const KernelSpec spec{"avx512", MR, NR, /*kc=*/256, /*mc=*/MR * 128, /*nc=*/NR * 16, micro_avx512};
  return spec;
}

}  // namespace ffm::gemm_detail
#endif
