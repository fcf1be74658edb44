// Scalar, AVX2 and AVX-512 versions of the assignment solver's inner loops. The SIMD versions are compiled
// with function target attributes (the addon is built for the baseline ISA) and picked at run time.
#include "core/assignment_kernels.h"

#include <limits>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FFM_LAP_X86 1
#include <immintrin.h>
#endif
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's avx512fintrin.h trips -Wmaybe-uninitialized inside _mm512_cvtps_pd (its _mm512_undefined_pd).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace ffm::lap {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// (a, ia) < (b, ib) lexicographically; an index < 0 marks "no entry" and sorts last.
inline bool lex_less(double a, int64_t ia, double b, int64_t ib) {
  if (ia < 0) return false;
  if (ib < 0) return true;
  return a < b || (a == b && ia < ib);
}

inline void top2_insert(double val, int64_t idx, Top2* t) {
  if (lex_less(val, idx, t->a1, t->j1)) {
    t->a2 = t->a1;
    t->j2 = t->j1;
    t->a1 = val;
    t->j1 = idx;
  } else if (lex_less(val, idx, t->a2, t->j2)) {
    t->a2 = val;
    t->j2 = idx;
  }
}

// ---- scalar ---------------------------------------------------------------------------------------------
// The scalar loops also finish the SIMD kernels' tails, starting at k0 with the running minima.

template <class T>
inline void scan_tail(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row,
                      const double* fpen, size_t k0, size_t m, ScanResult* r) {
  for (size_t k = k0; k < m; ++k) {
    double cand = (s * double(c[k]) - v[k]) + h;
    double d = dw[k];
    if (cand < d) {
      d = cand;
      dw[k] = d;
      pred[k] = row;
    }
    if (lex_less(d, int64_t(k), r->min_all, r->arg_all)) {
      r->min_all = d;
      r->arg_all = int64_t(k);
    }
    double df = d + fpen[k];
    if (lex_less(df, int64_t(k), r->min_free, r->arg_free)) {
      r->min_free = df;
      r->arg_free = int64_t(k);
    }
  }
  // A column whose dw is +inf was scanned already: it is not a candidate.
  if (r->min_all == kInf) r->arg_all = -1;
  if (r->min_free == kInf) r->arg_free = -1;
}

template <class T>
void scan_scalar(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row,
                 const double* fpen, size_t m, ScanResult* r) {
  *r = {kInf, -1, kInf, -1};
  scan_tail(c, s, h, v, dw, pred, row, fpen, 0, m, r);
}

template <class T>
inline void top2_tail(const T* c, double s, const double* v, size_t k0, size_t m, Top2* t) {
  for (size_t k = k0; k < m; ++k) top2_insert(s * double(c[k]) - v[k], int64_t(k), t);
}

template <class T>
void top2_scalar(const T* c, double s, const double* v, size_t m, Top2* t) {
  *t = {kInf, kInf, -1, -1};
  top2_tail(c, s, v, 0, m, t);
}

template <class T>
inline void colmin_body(const T* C, size_t rows, size_t stride, size_t j0, size_t j1, double s, double* vmin,
                        int32_t* arg) {
  for (size_t i = 0; i < rows; ++i) {
    const T* row = C + i * stride;
    for (size_t j = j0; j < j1; ++j) {
      double x = s * double(row[j]);
      bool lt = x < vmin[j];
      vmin[j] = lt ? x : vmin[j];
      arg[j] = lt ? int32_t(i) : arg[j];
    }
  }
}

template <class T>
void colmin_scalar(const T* C, size_t rows, size_t stride, size_t j0, size_t j1, double s, double* vmin,
                   int32_t* arg) {
  colmin_body(C, rows, stride, j0, j1, s, vmin, arg);
}

#ifdef FFM_LAP_X86
// ---- AVX-512 (F + VL), 8 doubles per step ----------------------------------------------------------------
#define FFM_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

FFM_AVX512 inline __m512d load8(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
FFM_AVX512 inline __m512d load8(const double* p) { return _mm512_loadu_pd(p); }

template <class T>
FFM_AVX512 void scan_avx512(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row,
                            const double* fpen, size_t m, ScanResult* r) {
  const __m512d vs = _mm512_set1_pd(s), vh = _mm512_set1_pd(h), step = _mm512_set1_pd(8.0);
  const __m256i vrow = _mm256_set1_epi32(row);
  __m512d min_all = _mm512_set1_pd(kInf), min_free = min_all;
  __m512d arg_all = _mm512_set1_pd(-1.0), arg_free = arg_all;
  __m512d idx = _mm512_setr_pd(0, 1, 2, 3, 4, 5, 6, 7);
  size_t k = 0;
  for (; k + 8 <= m; k += 8) {
    __m512d cand = _mm512_add_pd(_mm512_sub_pd(_mm512_mul_pd(vs, load8(c + k)), _mm512_loadu_pd(v + k)), vh);
    __m512d d = _mm512_loadu_pd(dw + k);
    __mmask8 upd = _mm512_cmp_pd_mask(cand, d, _CMP_LT_OQ);
    d = _mm512_mask_blend_pd(upd, d, cand);
    _mm512_mask_storeu_pd(dw + k, upd, cand);
    _mm256_mask_storeu_epi32(pred + k, upd, vrow);
    // Strict < per lane keeps the first (smallest) column among ties.
    __mmask8 la = _mm512_cmp_pd_mask(d, min_all, _CMP_LT_OQ);
    min_all = _mm512_mask_blend_pd(la, min_all, d);
    arg_all = _mm512_mask_blend_pd(la, arg_all, idx);
    __m512d df = _mm512_add_pd(d, _mm512_loadu_pd(fpen + k));
    __mmask8 lf = _mm512_cmp_pd_mask(df, min_free, _CMP_LT_OQ);
    min_free = _mm512_mask_blend_pd(lf, min_free, df);
    arg_free = _mm512_mask_blend_pd(lf, arg_free, idx);
    idx = _mm512_add_pd(idx, step);
  }
  alignas(64) double ma[8], ia[8], mf[8], jf[8];
  _mm512_store_pd(ma, min_all);
  _mm512_store_pd(ia, arg_all);
  _mm512_store_pd(mf, min_free);
  _mm512_store_pd(jf, arg_free);
  *r = {kInf, -1, kInf, -1};
  for (int l = 0; l < 8; ++l) {
    if (lex_less(ma[l], int64_t(ia[l]), r->min_all, r->arg_all)) r->min_all = ma[l], r->arg_all = int64_t(ia[l]);
    if (lex_less(mf[l], int64_t(jf[l]), r->min_free, r->arg_free)) r->min_free = mf[l], r->arg_free = int64_t(jf[l]);
  }
  scan_tail(c, s, h, v, dw, pred, row, fpen, k, m, r);
}

template <class T>
FFM_AVX512 void top2_avx512(const T* c, double s, const double* v, size_t m, Top2* t) {
  const __m512d vs = _mm512_set1_pd(s), step = _mm512_set1_pd(8.0);
  __m512d a1 = _mm512_set1_pd(kInf), a2 = a1, i1 = _mm512_set1_pd(-1.0), i2 = i1;
  __m512d idx = _mm512_setr_pd(0, 1, 2, 3, 4, 5, 6, 7);
  size_t k = 0;
  for (; k + 8 <= m; k += 8) {
    __m512d r = _mm512_sub_pd(_mm512_mul_pd(vs, load8(c + k)), _mm512_loadu_pd(v + k));
    __mmask8 lt1 = _mm512_cmp_pd_mask(r, a1, _CMP_LT_OQ);
    __mmask8 lt2 = _mm512_cmp_pd_mask(r, a2, _CMP_LT_OQ);
    // r < a1: (a1, a2) <- (r, a1); else r < a2: a2 <- r.
    a2 = _mm512_mask_blend_pd(lt2, a2, r);
    i2 = _mm512_mask_blend_pd(lt2, i2, idx);
    a2 = _mm512_mask_blend_pd(lt1, a2, a1);
    i2 = _mm512_mask_blend_pd(lt1, i2, i1);
    a1 = _mm512_mask_blend_pd(lt1, a1, r);
    i1 = _mm512_mask_blend_pd(lt1, i1, idx);
    idx = _mm512_add_pd(idx, step);
  }
  alignas(64) double A1[8], A2[8], I1[8], I2[8];
  _mm512_store_pd(A1, a1);
  _mm512_store_pd(A2, a2);
  _mm512_store_pd(I1, i1);
  _mm512_store_pd(I2, i2);
  *t = {kInf, kInf, -1, -1};
  for (int l = 0; l < 8; ++l) {
    top2_insert(A1[l], int64_t(I1[l]), t);
    top2_insert(A2[l], int64_t(I2[l]), t);
  }
  top2_tail(c, s, v, k, m, t);
}

template <class T>
FFM_AVX512 void colmin_avx512(const T* C, size_t rows, size_t stride, size_t j0, size_t j1, double s, double* vmin,
                              int32_t* arg) {
  colmin_body(C, rows, stride, j0, j1, s, vmin, arg);  // auto-vectorised for this target
}

// ---- AVX2, 4 doubles per step ---------------------------------------------------------------------------
#define FFM_AVX2 __attribute__((target("avx2,fma")))

FFM_AVX2 inline __m256d load4(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
FFM_AVX2 inline __m256d load4(const double* p) { return _mm256_loadu_pd(p); }

template <class T>
FFM_AVX2 void scan_avx2(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row,
                        const double* fpen, size_t m, ScanResult* r) {
  const __m256d vs = _mm256_set1_pd(s), vh = _mm256_set1_pd(h), step = _mm256_set1_pd(4.0);
  __m256d min_all = _mm256_set1_pd(kInf), min_free = min_all;
  __m256d arg_all = _mm256_set1_pd(-1.0), arg_free = arg_all;
  __m256d idx = _mm256_setr_pd(0, 1, 2, 3);
  size_t k = 0;
  for (; k + 4 <= m; k += 4) {
    __m256d cand = _mm256_add_pd(_mm256_sub_pd(_mm256_mul_pd(vs, load4(c + k)), _mm256_loadu_pd(v + k)), vh);
    __m256d d = _mm256_loadu_pd(dw + k);
    __m256d upd = _mm256_cmp_pd(cand, d, _CMP_LT_OQ);
    int bits = _mm256_movemask_pd(upd);
    if (bits) {
      d = _mm256_blendv_pd(d, cand, upd);
      _mm256_storeu_pd(dw + k, d);
      for (int l = 0; l < 4; ++l)
        if (bits & (1 << l)) pred[k + l] = row;
    }
    __m256d la = _mm256_cmp_pd(d, min_all, _CMP_LT_OQ);
    min_all = _mm256_blendv_pd(min_all, d, la);
    arg_all = _mm256_blendv_pd(arg_all, idx, la);
    __m256d df = _mm256_add_pd(d, _mm256_loadu_pd(fpen + k));
    __m256d lf = _mm256_cmp_pd(df, min_free, _CMP_LT_OQ);
    min_free = _mm256_blendv_pd(min_free, df, lf);
    arg_free = _mm256_blendv_pd(arg_free, idx, lf);
    idx = _mm256_add_pd(idx, step);
  }
  alignas(32) double ma[4], ia[4], mf[4], jf[4];
  _mm256_store_pd(ma, min_all);
  _mm256_store_pd(ia, arg_all);
  _mm256_store_pd(mf, min_free);
  _mm256_store_pd(jf, arg_free);
  *r = {kInf, -1, kInf, -1};
  for (int l = 0; l < 4; ++l) {
    if (lex_less(ma[l], int64_t(ia[l]), r->min_all, r->arg_all)) r->min_all = ma[l], r->arg_all = int64_t(ia[l]);
    if (lex_less(mf[l], int64_t(jf[l]), r->min_free, r->arg_free)) r->min_free = mf[l], r->arg_free = int64_t(jf[l]);
  }
  scan_tail(c, s, h, v, dw, pred, row, fpen, k, m, r);
}

template <class T>
FFM_AVX2 void top2_avx2(const T* c, double s, const double* v, size_t m, Top2* t) {
  const __m256d vs = _mm256_set1_pd(s), step = _mm256_set1_pd(4.0);
  __m256d a1 = _mm256_set1_pd(kInf), a2 = a1, i1 = _mm256_set1_pd(-1.0), i2 = i1;
  __m256d idx = _mm256_setr_pd(0, 1, 2, 3);
  size_t k = 0;
  for (; k + 4 <= m; k += 4) {
    __m256d r = _mm256_sub_pd(_mm256_mul_pd(vs, load4(c + k)), _mm256_loadu_pd(v + k));
    __m256d lt1 = _mm256_cmp_pd(r, a1, _CMP_LT_OQ);
    __m256d lt2 = _mm256_cmp_pd(r, a2, _CMP_LT_OQ);
    a2 = _mm256_blendv_pd(a2, r, lt2);
    i2 = _mm256_blendv_pd(i2, idx, lt2);
    a2 = _mm256_blendv_pd(a2, a1, lt1);
    i2 = _mm256_blendv_pd(i2, i1, lt1);
    a1 = _mm256_blendv_pd(a1, r, lt1);
    i1 = _mm256_blendv_pd(i1, idx, lt1);
    idx = _mm256_add_pd(idx, step);
  }
  alignas(32) double A1[4], A2[4], I1[4], I2[4];
  _mm256_store_pd(A1, a1);
  _mm256_store_pd(A2, a2);
  _mm256_store_pd(I1, i1);
  _mm256_store_pd(I2, i2);
  *t = {kInf, kInf, -1, -1};
  for (int l = 0; l < 4; ++l) {
    top2_insert(A1[l], int64_t(I1[l]), t);
    top2_insert(A2[l], int64_t(I2[l]), t);
  }
  top2_tail(c, s, v, k, m, t);
}

template <class T>
FFM_AVX2 void colmin_avx2(const T* C, size_t rows, size_t stride, size_t j0, size_t j1, double s, double* vmin,
                          int32_t* arg) {
  colmin_body(C, rows, stride, j0, j1, s, vmin, arg);
}
#endif  // FFM_LAP_X86

}  // namespace

bool cpu_has(LapKernel k) {
#ifdef FFM_LAP_X86
  if (k == LapKernel::Avx512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  if (k == LapKernel::Avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return k == LapKernel::Scalar || k == LapKernel::Auto;
}

LapKernel resolve_kernel(LapKernel k) {
  if (k != LapKernel::Auto) return k;
  if (cpu_has(LapKernel::Avx512)) return LapKernel::Avx512;
  if (cpu_has(LapKernel::Avx2)) return LapKernel::Avx2;
  return LapKernel::Scalar;
}

template <class T>
Kernels<T> kernels_for(LapKernel k) {
  switch (resolve_kernel(k)) {
#ifdef FFM_LAP_X86
    case LapKernel::Avx512:
      return {&scan_avx512<T>, &top2_avx512<T>, &colmin_avx512<T>};
    case LapKernel::Avx2:
      return {&scan_avx2<T>, &top2_avx2<T>, &colmin_avx2<T>};
#endif
    default:
      return {&scan_scalar<T>, &top2_scalar<T>, &colmin_scalar<T>};
  }
}

template Kernels<float> kernels_for<float>(LapKernel);
template Kernels<double> kernels_for<double>(LapKernel);

}  // namespace ffm::lap
