// AVX-512 micro-kernel, 12×32: 24 zmm accumulators, two B vectors per step, A broadcast straight from memory
// (26 of the 32 zmm registers). Compiled for AVX-512F through a target attribute so the rest of the build
// stays baseline x86-64; the driver calls it only after checking the CPU (and the OS's zmm state).
#include "core/gemm_kernels.h"

#ifdef FFM_GEMM_X86
#include <immintrin.h>

namespace ffm::gemm_detail {
namespace {

constexpr size_t MR = 12, NR = 32;

#define FFM_ROW(i)                                    \
  do {                                                \
    const __m512 av = _mm512_set1_ps(a[i]);           \
    c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);       \
    c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);       \
  } while (0)

__attribute__((target("avx512f"))) void micro_avx512(size_t kc, const float* a, const float* b, float* c, size_t ldc,
                                                      size_t mr, size_t nr, float alpha, float beta) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00,
         c81 = c00, c90 = c00, c91 = c00, c100 = c00, c101 = c00, c110 = c00, c111 = c00;
  for (size_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    FFM_ROW(0);
    FFM_ROW(1);
    FFM_ROW(2);
    FFM_ROW(3);
    FFM_ROW(4);
    FFM_ROW(5);
    FFM_ROW(6);
    FFM_ROW(7);
    FFM_ROW(8);
    FFM_ROW(9);
    FFM_ROW(10);
    FFM_ROW(11);
    a += MR;
    b += NR;
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

#undef FFM_ROW

}  // namespace

const KernelSpec& avx512_kernel() {
  // A micro-panel (MR×KC·4 B = 12 KiB) stays in L1 while NC/NR B micro-panels stream from the L2-resident
  // B block (KC×NC·4 B = 512 KiB); the MC×KC A block (1.5 MiB) lives in L3.
  static const KernelSpec spec{"avx512", MR, NR, /*kc=*/256, /*mc=*/MR * 128, /*nc=*/NR * 16, micro_avx512};
  return spec;
}

}  // namespace ffm::gemm_detail
#endif
