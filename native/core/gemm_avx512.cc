// AVX-512 micro-kernel, 12×32: 24 zmm accumulators, two B vectors per step, A broadcast straight from memory
// (26 of the 32 zmm registers). Compiled for AVX-512F through a target attribute so the rest of the build
// stays baseline x86-64; the driver calls it only after checking the CPU (and the OS's zmm state).
//
// The body is a template over the number of live rows R ≤ 12, so an edge tile (or a short M, down to a single
// row) costs R/12 of a full one instead of a full one; partial columns use masked loads and stores.
#include "core/gemm_kernels.h"

#ifdef FFM_GEMM_X86
#include <immintrin.h>

namespace ffm::gemm_detail {
namespace {

constexpr size_t MR = 12, NR = 32;

// acc{0,1}[u][i] += a(i, k)·b(k, 0..2W) for the k ≡ u (mod U); a(i, k) = a[k·a_cs + i] for kColA,
// a[k·a_cs + i·a_rs] otherwise (the compile-time 1 lets the packed loop use fixed offsets).
template <int R, int U, bool kColA>
__attribute__((target("avx512f"), always_inline)) inline void accumulate(size_t kc, const float* a, size_t a_rs, size_t a_cs,
                                                                      const float* b, size_t b_ks, __m512 (&acc0)[U][R],
                                                                      __m512 (&acc1)[U][R]) {
  const size_t rs = kColA ? 1 : a_rs;
  size_t k = 0;
  for (; k + U <= kc; k += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u, a += a_cs, b += b_ks) {
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
      for (int i = 0; i < R; ++i) {
        const __m512 av = _mm512_set1_ps(a[i * rs]);
        acc0[u][i] = _mm512_fmadd_ps(av, b0, acc0[u][i]);
        acc1[u][i] = _mm512_fmadd_ps(av, b1, acc1[u][i]);
      }
    }
  }
  for (; k < kc; ++k, a += a_cs, b += b_ks) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * rs]);
      acc0[0][i] = _mm512_fmadd_ps(av, b0, acc0[0][i]);
      acc1[0][i] = _mm512_fmadd_ps(av, b1, acc1[0][i]);
    }
  }
}

template <int R>
__attribute__((target("avx512f"), always_inline)) inline void tile_avx512(size_t kc, const float* a, size_t a_rs,
                                                                          size_t a_cs, const float* b, size_t b_ks,
                                                                          float* c, size_t ldc, size_t nr, float alpha,
                                                                          float beta) {
  // With few rows, one accumulator pair per row would make the loop wait on FMA latency (one dependency
  // chain per k step); U interleaved accumulator sets over k keep enough FMAs in flight, summed at the end.
  constexpr int U = R == 1 ? 4 : R == 2 ? 2 : 1;
  __m512 acc0[U][R], acc1[U][R];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) acc0[u][i] = acc1[u][i] = _mm512_setzero_ps();
  if (a_rs == 1)  // packed (or column-contiguous) A: R of the MR floats of each k step are live
    accumulate<R, U, true>(kc, a, a_rs, a_cs, b, b_ks, acc0, acc1);
  else  // A rows straight from the caller's row-major matrix
    accumulate<R, U, false>(kc, a, a_rs, a_cs, b, b_ks, acc0, acc1);
#pragma GCC unroll 4
  for (int u = 1; u < U; ++u)
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      acc0[0][i] = _mm512_add_ps(acc0[0][i], acc0[u][i]);
      acc1[0][i] = _mm512_add_ps(acc1[0][i], acc1[u][i]);
    }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF) : nr > 16 ? __mmask16((1u << (nr - 16)) - 1) : __mmask16(0);
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    __m512 r0 = _mm512_mul_ps(va, acc0[0][i]), r1 = _mm512_mul_ps(va, acc1[0][i]);
    if (beta != 0.0f) {  // beta == 0: C is not read (it may hold NaN)
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
    }
    _mm512_mask_storeu_ps(ci, m0, r0);
    _mm512_mask_storeu_ps(ci + 16, m1, r1);
  }
}

__attribute__((target("avx512f"))) void micro_avx512(size_t kc, const float* a, size_t a_rs, size_t a_cs,
                                                      const float* b, size_t b_ks, float* c, size_t ldc, size_t mr,
                                                      size_t nr, float alpha, float beta) {
  switch (mr) {
#define FFM_CASE(r) \
  case r: return tile_avx512<r>(kc, a, a_rs, a_cs, b, b_ks, c, ldc, nr, alpha, beta);
    FFM_CASE(1) FFM_CASE(2) FFM_CASE(3) FFM_CASE(4) FFM_CASE(5) FFM_CASE(6)
    FFM_CASE(7) FFM_CASE(8) FFM_CASE(9) FFM_CASE(10) FFM_CASE(11) FFM_CASE(12)
#undef FFM_CASE
    default: return;
  }
}

// Sum of the 16 lanes. Built from zero-masked shuffles because GCC 12's unmasked ones (and
// _mm512_reduce_add_ps, _mm512_extractf64x4_pd) trip -Wmaybe-uninitialized inside its own headers.
__attribute__((target("avx512f"), always_inline)) inline float hsum512(__m512 x) {
  const __mmask16 all = 0xFFFF;
  x = _mm512_add_ps(x, _mm512_maskz_shuffle_f32x4(all, x, x, 0x4E));  // + the other 256-bit half
  x = _mm512_add_ps(x, _mm512_maskz_shuffle_f32x4(all, x, x, 0xB1));  // + the neighbouring 128-bit lane
  x = _mm512_add_ps(x, _mm512_maskz_permute_ps(all, x, 0x4E));        // + the other pair within the lane
  x = _mm512_add_ps(x, _mm512_maskz_permute_ps(all, x, 0xB1));        // + the neighbouring float
  return _mm512_cvtss_f32(x);
}

// Dot products of m ≤ 4 rows of A with 4 rows of B at a time: 16 independent accumulators over k.
template <int R>
__attribute__((target("avx512f"), always_inline)) inline void rows_dot_tile(size_t K, const float* a, size_t lda,
                                                                            const float* b, size_t ldb, size_t n,
                                                                            float* c, size_t ldc, float alpha,
                                                                            float beta) {
  for (size_t j0 = 0; j0 < n; j0 += 4) {
    const size_t nj = n - j0 < 4 ? n - j0 : 4;
    const float* bj[4];
    for (size_t j = 0; j < 4; ++j) bj[j] = b + (j0 + (j < nj ? j : 0)) * ldb;  // dead rows alias a live one
    __m512 acc[R][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_setzero_ps();
    for (size_t k = 0; k < K; k += 16) {
      const __mmask16 m = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
      __m512 bv[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) bv[j] = _mm512_maskz_loadu_ps(m, bj[j] + k);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const __m512 av = _mm512_maskz_loadu_ps(m, a + i * lda + k);
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
      }
    }
    for (int i = 0; i < R; ++i)
      for (size_t j = 0; j < nj; ++j) {
        float* cij = c + i * ldc + j0 + j;
        const float v = alpha * hsum512(acc[i][j]);
        *cij = beta == 0.0f ? v : v + beta * *cij;
      }
  }
}

__attribute__((target("avx512f"))) void rows_dot_avx512(size_t K, const float* a, size_t lda, size_t m, const float* b,
                                                         size_t ldb, size_t n, float* c, size_t ldc, float alpha,
                                                         float beta) {
  switch (m) {
    case 1: return rows_dot_tile<1>(K, a, lda, b, ldb, n, c, ldc, alpha, beta);
    case 2: return rows_dot_tile<2>(K, a, lda, b, ldb, n, c, ldc, alpha, beta);
    case 3: return rows_dot_tile<3>(K, a, lda, b, ldb, n, c, ldc, alpha, beta);
    case 4: return rows_dot_tile<4>(K, a, lda, b, ldb, n, c, ldc, alpha, beta);
    default: return;
  }
}

}  // namespace

const KernelSpec& avx512_kernel() {
  // A micro-panel (MR×KC·4 B = 12 KiB) stays in L1 while NC/NR B micro-panels stream from the L2-resident
  // B block (KC×NC·4 B = 512 KiB); the MC×KC A block (1.5 MiB) lives in L3.
  static const KernelSpec spec{"avx512", MR, NR, /*kc=*/256, /*mc=*/MR * 128, /*nc=*/NR * 16, micro_avx512,
                               transpose_copy_avx2, rows_dot_avx512};
  return spec;
}

}  // namespace ffm::gemm_detail
#endif
