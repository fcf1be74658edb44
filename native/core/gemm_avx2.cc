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

// acc{0,1}[u][i] += a(i, k)·b(k, 0..2W) for the k ≡ u (mod U); a(i, k) = a[k·a_cs + i] for kColA,
// a[k·a_cs + i·a_rs] otherwise (the compile-time 1 lets the packed loop use fixed offsets).
template <int R, int U, bool kColA>
__attribute__((target("avx2,fma"), always_inline)) inline void accumulate(size_t kc, const float* a, size_t a_rs, size_t a_cs,
                                                                      const float* b, size_t b_ks, __m256 (&acc0)[U][R],
                                                                      __m256 (&acc1)[U][R]) {
  const size_t rs = kColA ? 1 : a_rs;
  size_t k = 0;
  for (; k + U <= kc; k += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u, a += a_cs, b += b_ks) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
      for (int i = 0; i < R; ++i) {
        const __m256 av = _mm256_set1_ps(a[i * rs]);
        acc0[u][i] = _mm256_fmadd_ps(av, b0, acc0[u][i]);
        acc1[u][i] = _mm256_fmadd_ps(av, b1, acc1[u][i]);
      }
    }
  }
  for (; k < kc; ++k, a += a_cs, b += b_ks) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      const __m256 av = _mm256_set1_ps(a[i * rs]);
      acc0[0][i] = _mm256_fmadd_ps(av, b0, acc0[0][i]);
      acc1[0][i] = _mm256_fmadd_ps(av, b1, acc1[0][i]);
    }
  }
}

template <int R>
__attribute__((target("avx2,fma"), always_inline)) inline void tile_avx2(size_t kc, const float* a, size_t a_rs,
                                                                        size_t a_cs, const float* b, size_t b_ks,
                                                                        float* c, size_t ldc, size_t nr, float alpha,
                                                                        float beta) {
  // With few rows, one accumulator pair per row would make the loop wait on FMA latency (one dependency
  // chain per k step); U interleaved accumulator sets over k keep enough FMAs in flight, summed at the end.
  constexpr int U = R == 1 ? 4 : R == 2 ? 2 : 1;
  __m256 acc0[U][R], acc1[U][R];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) acc0[u][i] = acc1[u][i] = _mm256_setzero_ps();
  if (a_rs == 1)  // packed (or column-contiguous) A: R of the MR floats of each k step are live
    accumulate<R, U, true>(kc, a, a_rs, a_cs, b, b_ks, acc0, acc1);
  else  // A rows straight from the caller's row-major matrix
    accumulate<R, U, false>(kc, a, a_rs, a_cs, b, b_ks, acc0, acc1);
#pragma GCC unroll 4
  for (int u = 1; u < U; ++u)
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      acc0[0][i] = _mm256_add_ps(acc0[0][i], acc0[u][i]);
      acc1[0][i] = _mm256_add_ps(acc1[0][i], acc1[u][i]);
    }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (nr == NR) {
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(va, acc0[0][i]), r1 = _mm256_mul_ps(va, acc1[0][i]);
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
    __m256 r0 = _mm256_mul_ps(va, acc0[0][i]), r1 = _mm256_mul_ps(va, acc1[0][i]);
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

// Dot products of m ≤ 4 rows of A with 2 rows of B at a time (8 accumulators; 16 ymm registers).
template <int R>
__attribute__((target("avx2,fma"), always_inline)) inline void rows_dot_tile(size_t K, const float* a, size_t lda,
                                                                            const float* b, size_t ldb, size_t n,
                                                                            float* c, size_t ldc, float alpha,
                                                                            float beta) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (size_t j0 = 0; j0 < n; j0 += 2) {
    const size_t nj = n - j0 < 2 ? n - j0 : 2;
    const float* bj[2] = {b + j0 * ldb, b + (j0 + nj - 1) * ldb};  // a dead second row aliases the first
    __m256 acc[R][2];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    size_t k = 0;
    for (; k + 8 <= K; k += 8) {
      const __m256 b0 = _mm256_loadu_ps(bj[0] + k), b1 = _mm256_loadu_ps(bj[1] + k);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const __m256 av = _mm256_loadu_ps(a + i * lda + k);
        acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
      }
    }
    if (k < K) {  // masked tail: lanes past K are neither read nor added
      const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(K - k)), lane);
      const __m256 b0 = _mm256_maskload_ps(bj[0] + k, m), b1 = _mm256_maskload_ps(bj[1] + k, m);
      for (int i = 0; i < R; ++i) {
        const __m256 av = _mm256_maskload_ps(a + i * lda + k, m);
        acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
      }
    }
    for (int i = 0; i < R; ++i)
      for (size_t j = 0; j < nj; ++j) {
        const __m128 q = _mm_add_ps(_mm256_castps256_ps128(acc[i][j]), _mm256_extractf128_ps(acc[i][j], 1));
        const __m128 h = _mm_add_ps(q, _mm_movehl_ps(q, q));
        const float v = alpha * _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
        float* cij = c + i * ldc + j0 + j;
        *cij = beta == 0.0f ? v : v + beta * *cij;
      }
  }
}

__attribute__((target("avx2,fma"))) void rows_dot_avx2(size_t K, const float* a, size_t lda, size_t m, const float* b,
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

__attribute__((target("avx2"))) void transpose_copy_avx2(const float* src, size_t ld_src, size_t rows, size_t kc,
                                                         float* dst, size_t dst_stride) {
  size_t r0 = 0;
  for (; r0 + 8 <= rows; r0 += 8) {
    const float* s = src + r0 * ld_src;
    size_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      // Rows r0..r0+7, columns k..k+7 in; the same block transposed out (the classic unpack/shuffle/permute).
      const __m256 x0 = _mm256_loadu_ps(s + 0 * ld_src + k), x1 = _mm256_loadu_ps(s + 1 * ld_src + k),
                   x2 = _mm256_loadu_ps(s + 2 * ld_src + k), x3 = _mm256_loadu_ps(s + 3 * ld_src + k),
                   x4 = _mm256_loadu_ps(s + 4 * ld_src + k), x5 = _mm256_loadu_ps(s + 5 * ld_src + k),
                   x6 = _mm256_loadu_ps(s + 6 * ld_src + k), x7 = _mm256_loadu_ps(s + 7 * ld_src + k);
      const __m256 t0 = _mm256_unpacklo_ps(x0, x1), t1 = _mm256_unpackhi_ps(x0, x1), t2 = _mm256_unpacklo_ps(x2, x3),
                   t3 = _mm256_unpackhi_ps(x2, x3), t4 = _mm256_unpacklo_ps(x4, x5), t5 = _mm256_unpackhi_ps(x4, x5),
                   t6 = _mm256_unpacklo_ps(x6, x7), t7 = _mm256_unpackhi_ps(x6, x7);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float* d = dst + k * dst_stride + r0;
      _mm256_storeu_ps(d + 0 * dst_stride, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(d + 1 * dst_stride, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(d + 2 * dst_stride, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(d + 3 * dst_stride, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(d + 4 * dst_stride, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(d + 5 * dst_stride, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(d + 6 * dst_stride, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(d + 7 * dst_stride, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (; k < kc; ++k)
      for (size_t r = 0; r < 8; ++r) dst[k * dst_stride + r0 + r] = s[r * ld_src + k];
  }
  for (; r0 < rows; ++r0) {
    const float* s = src + r0 * ld_src;
    for (size_t k = 0; k < kc; ++k) dst[k * dst_stride + r0] = s[k];
  }
}

const KernelSpec& avx2_kernel() {
  // KC·NR·4 B = 16 KiB of B per micro-panel; NC columns of B (KC×NC·4 B = 512 KiB) stay in L2.
  static const KernelSpec spec{"avx2", MR, NR, /*kc=*/256, /*mc=*/MR * 160, /*nc=*/NR * 32, micro_avx2,
                               transpose_copy_avx2, rows_dot_avx2};
  return spec;
}

}  // namespace ffm::gemm_detail
#endif
