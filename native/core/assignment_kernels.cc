// Scalar, AVX2 and AVX-512 versions of the assignment solver's inner loops. The SIMD versions are compiled
// with function target attributes (the addon is built for the baseline ISA) and picked at run time.
#include "core/assignment_kernels.h"

#include <algorithm>
#include <limits>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FFM_LAP_X86 1
#include <immintrin.h>
#endif
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's avx512fintrin.h trips -Wmaybe-uninitialized and -Wuninitialized inside _mm512_cvtps_pd and
// _mm512_reduce_min_pd (their _mm512_undefined_pd placeholders).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
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
// The SIMD kernels track minimum values only (no index blends in the hot loop) and then find the first
// column attaining them in a second, early-exit pass. The scalar loops define the result they reproduce:
// the first (smallest) column among equal values. Reduced costs: s*c + (h - v) and s*c - v; s = ±1 makes
// s*c exact, so a fused multiply-add gives the same double as separate operations.

template <class T>
inline double scan_cand(const T* c, double s, double h, const double* v, size_t k) {
  return s * double(c[k]) + (h - v[k]);
}

template <class T>
inline double reduced(const T* c, double s, const double* v, size_t k) {
  return s * double(c[k]) - v[k];
}

// Updates dw/pred for columns [k0, m) and folds them into the running minimum.
template <class T>
inline void scan_update_tail(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row,
                             size_t k0, size_t m, double* min_all) {
  for (size_t k = k0; k < m; ++k) {
    double cand = scan_cand(c, s, h, v, k);
    double d = dw[k];
    if (cand < d) {
      d = cand;
      dw[k] = d;
      pred[k] = row;
    }
    if (d < *min_all) *min_all = d;
  }
}

// The first column from k0 on whose dw equals min_all (the scalar loop's choice among ties).
inline void scan_finish(const double* dw, size_t m, double min_all, size_t k0, ScanResult* r) {
  *r = {kInf, -1};
  if (min_all == kInf) return;
  for (size_t k = k0; k < m; ++k)
    if (dw[k] == min_all) {
      r->arg_all = int64_t(k);
      r->min_all = dw[k];
      return;
    }
}

template <class T>
void scan_scalar(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row, size_t m,
                 ScanResult* r) {
  double min_all = kInf;
  scan_update_tail(c, s, h, v, dw, pred, row, 0, m, &min_all);
  scan_finish(dw, m, min_all, 0, r);
}

template <class T>
inline void top2_tail(const T* c, double s, const double* v, size_t k0, size_t m, Top2* t) {
  for (size_t k = k0; k < m; ++k) top2_insert(reduced(c, s, v, k), int64_t(k), t);
}

template <class T>
void top2_scalar(const T* c, double s, const double* v, size_t m, Top2* t) {
  *t = {kInf, kInf, -1, -1};
  top2_tail(c, s, v, 0, m, t);
}

// The two smallest values of a multiset given per lane as (smallest, second smallest) pairs.
inline void two_smallest(const double* a1, const double* a2, int lanes, double* v1, double* v2) {
  *v1 = kInf;
  *v2 = kInf;
  for (int l = 0; l < lanes; ++l)
    for (double x : {a1[l], a2[l]}) {
      if (x < *v1) {
        *v2 = *v1;
        *v1 = x;
      } else if (x < *v2) {
        *v2 = x;
      }
    }
}

// Given the two smallest values v1 <= v2 of the row, finds their columns as top2_scalar would: j1 the first
// column equal to v1, j2 the next one equal to v1 if v2 == v1, else the first one equal to v2. Continues
// from the state in t, so it can be called block by block.
template <class T>
inline void top2_locate(const T* c, double s, const double* v, size_t k0, size_t m, double v1, double v2, Top2* t) {
  for (size_t k = k0; k < m && (t->j1 < 0 || t->j2 < 0); ++k) {
    double r = reduced(c, s, v, k);
    if (t->j1 < 0 && r == v1) {
      t->j1 = int64_t(k);
      t->a1 = r;
    } else if (r == v2) {
      t->j2 = int64_t(k);
      t->a2 = r;
    }
  }
}

template <class T>
inline void colmin_body(const T* C, size_t rows, size_t stride, size_t j0, size_t j1, double s, const double* row_off,
                        double* vmin) {
  for (size_t i = 0; i < rows; ++i) {
    const T* row = C + i * stride;
    const double off = row_off[i];
    for (size_t j = j0; j < j1; ++j) {
      double x = s * double(row[j]) - off;
      vmin[j] = x < vmin[j] ? x : vmin[j];
    }
  }
}

#ifdef FFM_LAP_X86
// Rows of a large cost matrix come from DRAM, and a 12 KB row is too short for the hardware prefetcher to
// reach full speed: asking for the line 1 KB ahead made the scans ~25% faster at n = 3072 (a prefetch past
// the end of the row is harmless).
template <class T>
inline void prefetch_ahead(const T* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + 1024, _MM_HINT_T0);
}

// ---- AVX-512 (F + VL), 8 doubles per vector, two independent accumulators ---------------------------------
#define FFM_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

FFM_AVX512 inline __m512d load8(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
FFM_AVX512 inline __m512d load8(const double* p) { return _mm512_loadu_pd(p); }

template <class T>
FFM_AVX512 inline void scan8(const T* c, const double* v, double* dw, int32_t* pred, size_t k, __m512d vs, __m512d vh,
                             __m256i vrow, __m512d& ma) {
  __m512d cand = _mm512_fmadd_pd(vs, load8(c + k), _mm512_sub_pd(vh, _mm512_loadu_pd(v + k)));
  __m512d old = _mm512_loadu_pd(dw + k);
  __mmask8 upd = _mm512_cmp_pd_mask(cand, old, _CMP_LT_OQ);
  __m512d d = _mm512_min_pd(cand, old);  // = cand < old ? cand : old, exactly the scalar update
  _mm512_storeu_pd(dw + k, d);
  _mm256_mask_storeu_epi32(pred + k, upd, vrow);
  ma = _mm512_min_pd(ma, d);
}

template <class T>
FFM_AVX512 void scan_avx512(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row,
                            size_t m, ScanResult* r) {
  const __m512d vs = _mm512_set1_pd(s), vh = _mm512_set1_pd(h);
  const __m256i vrow = _mm256_set1_epi32(row);
  __m512d ma0 = _mm512_set1_pd(kInf), ma1 = ma0;
  size_t k = 0;
  for (; k + 16 <= m; k += 16) {
    prefetch_ahead(c + k);
    scan8(c, v, dw, pred, k, vs, vh, vrow, ma0);
    scan8(c, v, dw, pred, k + 8, vs, vh, vrow, ma1);
  }
  for (; k + 8 <= m; k += 8) scan8(c, v, dw, pred, k, vs, vh, vrow, ma0);
  double min_all = _mm512_reduce_min_pd(_mm512_min_pd(ma0, ma1));
  scan_update_tail(c, s, h, v, dw, pred, row, k, m, &min_all);
  // Locate the chosen column: vector compares with early exit, then the scalar finish from that block.
  const __m512d target = _mm512_set1_pd(min_all);
  size_t b = 0;
  for (; b + 8 <= m; b += 8)
    if (_mm512_cmp_pd_mask(_mm512_loadu_pd(dw + b), target, _CMP_EQ_OQ)) break;
  scan_finish(dw, m, min_all, b, r);
}

template <class T>
FFM_AVX512 inline void top2_8(const T* c, const double* v, size_t k, __m512d vs, __m512d& a1, __m512d& a2) {
  __m512d x = _mm512_fmsub_pd(vs, load8(c + k), _mm512_loadu_pd(v + k));
  a2 = _mm512_min_pd(a2, _mm512_max_pd(a1, x));
  a1 = _mm512_min_pd(a1, x);
}

template <class T>
FFM_AVX512 void top2_avx512(const T* c, double s, const double* v, size_t m, Top2* t) {
  const __m512d vs = _mm512_set1_pd(s);
  __m512d a1 = _mm512_set1_pd(kInf), a2 = a1, b1 = a1, b2 = a1;
  size_t k = 0;
  for (; k + 16 <= m; k += 16) {
    prefetch_ahead(c + k);
    top2_8(c, v, k, vs, a1, a2);
    top2_8(c, v, k + 8, vs, b1, b2);
  }
  for (; k + 8 <= m; k += 8) top2_8(c, v, k, vs, a1, a2);
  alignas(64) double A1[17], A2[17];
  _mm512_store_pd(A1, a1);
  _mm512_store_pd(A1 + 8, b1);
  _mm512_store_pd(A2, a2);
  _mm512_store_pd(A2 + 8, b2);
  Top2 tail = {kInf, kInf, -1, -1};
  top2_tail(c, s, v, k, m, &tail);
  A1[16] = tail.a1;
  A2[16] = tail.a2;
  double v1, v2;
  two_smallest(A1, A2, 17, &v1, &v2);
  *t = {kInf, kInf, -1, -1};
  // Skip whole blocks that hold neither value, then locate exactly.
  const __m512d t1 = _mm512_set1_pd(v1), t2 = _mm512_set1_pd(v2);
  size_t b = 0;
  for (; b + 8 <= m && (t->j1 < 0 || t->j2 < 0); b += 8) {
    __m512d x = _mm512_fmsub_pd(vs, load8(c + b), _mm512_loadu_pd(v + b));
    if (_mm512_cmp_pd_mask(x, t1, _CMP_EQ_OQ) | _mm512_cmp_pd_mask(x, t2, _CMP_EQ_OQ))
      top2_locate(c, s, v, b, b + 8, v1, v2, t);
  }
  top2_locate(c, s, v, b, m, v1, v2, t);
}

template <class T>
FFM_AVX512 void colmin_avx512(const T* C, size_t rows, size_t stride, size_t j0, size_t j1, double s, const double* row_off,
                      double* vmin) {
  colmin_body(C, rows, stride, j0, j1, s, row_off, vmin);  // auto-vectorised for this target
}

// ---- AVX2, 4 doubles per vector, two accumulators ---------------------------------------------------------
#define FFM_AVX2 __attribute__((target("avx2,fma")))

FFM_AVX2 inline __m256d load4(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
FFM_AVX2 inline __m256d load4(const double* p) { return _mm256_loadu_pd(p); }

FFM_AVX2 inline double hmin4(__m256d x) {
  __m128d m = _mm_min_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
  return std::min(_mm_cvtsd_f64(m), _mm_cvtsd_f64(_mm_unpackhi_pd(m, m)));
}

template <class T>
FFM_AVX2 inline void scan4(const T* c, const double* v, double* dw, int32_t* pred, size_t k, __m256d vs, __m256d vh,
                           int32_t row, __m256d& ma) {
  __m256d cand = _mm256_fmadd_pd(vs, load4(c + k), _mm256_sub_pd(vh, _mm256_loadu_pd(v + k)));
  __m256d old = _mm256_loadu_pd(dw + k);
  int bits = _mm256_movemask_pd(_mm256_cmp_pd(cand, old, _CMP_LT_OQ));
  __m256d d = _mm256_min_pd(cand, old);
  _mm256_storeu_pd(dw + k, d);
  while (bits) {
    pred[k + size_t(__builtin_ctz(unsigned(bits)))] = row;
    bits &= bits - 1;
  }
  ma = _mm256_min_pd(ma, d);
}

template <class T>
FFM_AVX2 void scan_avx2(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row,
                        size_t m, ScanResult* r) {
  const __m256d vs = _mm256_set1_pd(s), vh = _mm256_set1_pd(h);
  __m256d ma0 = _mm256_set1_pd(kInf), ma1 = ma0;
  size_t k = 0;
  for (; k + 8 <= m; k += 8) {
    prefetch_ahead(c + k);
    scan4(c, v, dw, pred, k, vs, vh, row, ma0);
    scan4(c, v, dw, pred, k + 4, vs, vh, row, ma1);
  }
  for (; k + 4 <= m; k += 4) scan4(c, v, dw, pred, k, vs, vh, row, ma0);
  double min_all = hmin4(_mm256_min_pd(ma0, ma1));
  scan_update_tail(c, s, h, v, dw, pred, row, k, m, &min_all);
  const __m256d target = _mm256_set1_pd(min_all);
  size_t b = 0;
  for (; b + 4 <= m; b += 4)
    if (_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(dw + b), target, _CMP_EQ_OQ))) break;
  scan_finish(dw, m, min_all, b, r);
}

template <class T>
FFM_AVX2 inline void top2_4(const T* c, const double* v, size_t k, __m256d vs, __m256d& a1, __m256d& a2) {
  __m256d x = _mm256_fmsub_pd(vs, load4(c + k), _mm256_loadu_pd(v + k));
  a2 = _mm256_min_pd(a2, _mm256_max_pd(a1, x));
  a1 = _mm256_min_pd(a1, x);
}

template <class T>
FFM_AVX2 void top2_avx2(const T* c, double s, const double* v, size_t m, Top2* t) {
  const __m256d vs = _mm256_set1_pd(s);
  __m256d a1 = _mm256_set1_pd(kInf), a2 = a1, b1 = a1, b2 = a1;
  size_t k = 0;
  for (; k + 8 <= m; k += 8) {
    prefetch_ahead(c + k);
    top2_4(c, v, k, vs, a1, a2);
    top2_4(c, v, k + 4, vs, b1, b2);
  }
  for (; k + 4 <= m; k += 4) top2_4(c, v, k, vs, a1, a2);
  alignas(32) double A1[10], A2[10];
  _mm256_store_pd(A1, a1);
  _mm256_store_pd(A1 + 4, b1);
  _mm256_store_pd(A2, a2);
  _mm256_store_pd(A2 + 4, b2);
  Top2 tail = {kInf, kInf, -1, -1};
  top2_tail(c, s, v, k, m, &tail);
  A1[8] = tail.a1;
  A2[8] = tail.a2;
  double v1, v2;
  two_smallest(A1, A2, 9, &v1, &v2);
  *t = {kInf, kInf, -1, -1};
  const __m256d t1 = _mm256_set1_pd(v1), t2 = _mm256_set1_pd(v2);
  size_t b = 0;
  for (; b + 4 <= m && (t->j1 < 0 || t->j2 < 0); b += 4) {
    __m256d x = _mm256_fmsub_pd(vs, load4(c + b), _mm256_loadu_pd(v + b));
    if (_mm256_movemask_pd(_mm256_or_pd(_mm256_cmp_pd(x, t1, _CMP_EQ_OQ), _mm256_cmp_pd(x, t2, _CMP_EQ_OQ))))
      top2_locate(c, s, v, b, b + 4, v1, v2, t);
  }
  top2_locate(c, s, v, b, m, v1, v2, t);
}

template <class T>
FFM_AVX2 void colmin_avx2(const T* C, size_t rows, size_t stride, size_t j0, size_t j1, double s, const double* row_off,
                      double* vmin) {
  colmin_body(C, rows, stride, j0, j1, s, row_off, vmin);  // auto-vectorised for this target
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
      return {&scan_scalar<T>, &top2_scalar<T>, &colmin_body<T>};
  }
}

template Kernels<float> kernels_for<float>(LapKernel);
template Kernels<double> kernels_for<double>(LapKernel);

}  // namespace ffm::lap
