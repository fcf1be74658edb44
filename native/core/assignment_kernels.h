// Inner loops of the assignment solver, one implementation per instruction set (assignment_kernels.cc).
// Internal to assignment.cc; kept separate so the solver logic reads without intrinsics.
//
// Every kernel computes reduced costs as s * double(c[k]) + (h - v[k]) in double (s = ±1, so a fused
// multiply-add rounds the same) and breaks ties towards the smallest column index, so the scalar, AVX2 and AVX-512 versions return
// bit-identical results (the solver's output never depends on the CPU it runs on).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/assignment.h"

namespace ffm::lap {

struct ScanResult {
  double min_all;   // smallest dw over all columns (after the update)
  int64_t arg_all;  // the first column attaining it, -1 if none
};

struct Top2 {
  double a1, a2;   // the two smallest reduced costs s*c[k] - v[k] (a1 <= a2)
  int64_t j1, j2;  // their columns (lexicographic by (value, column)); j2 = -1 when m == 1
};

template <class T>
struct Kernels {
  // One Dijkstra step: for every column k, cand = s*c[k] + (h - v[k]); if cand < dw[k], dw[k] = cand and
  // pred[k] = row. Then report the minimum of dw and the first column attaining it. Scanned columns carry
  // v[k] = -inf and dw[k] = +inf, so they are never updated nor chosen.
  void (*scan)(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row, size_t m,
               ScanResult* out);
  // The two smallest reduced costs of one row (augmenting row reduction, reduction transfer).
  void (*top2)(const T* c, double s, const double* v, size_t m, Top2* out);
  // Column minima of rows [0, rows) restricted to columns [j0, j1), each row shifted by its offset:
  // vmin[j] = min(vmin[j], s*C[i][j] - row_off[i]).
  void (*colmin)(const T* C, size_t rows, size_t stride, size_t j0, size_t j1, double s, const double* row_off,
                 double* vmin);
};

template <class T>
Kernels<T> kernels_for(LapKernel k);

// Whether this CPU can run kernel k (Auto: always).
bool cpu_has(LapKernel k);
// Resolves Auto to the best kernel this CPU supports.
LapKernel resolve_kernel(LapKernel k);

}  // namespace ffm::lap
