// Inner loops of the assignment solver, one implementation per instruction set (assignment_kernels.cc).
// Internal to assignment.cc; kept separate so the solver logic reads without intrinsics.
//
// Every kernel computes reduced costs as (s * double(c[k]) - v[k]) + h in double, in that order, and
// breaks ties towards the smallest column index, so the scalar, AVX2 and AVX-512 versions return
// bit-identical results (the solver's output never depends on the CPU it runs on).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/assignment.h"

namespace ffm::lap {

struct ScanResult {
  double min_all;    // smallest dw over all columns (after the update)
  int64_t arg_all;   // its column (smallest index among ties), -1 if none
  double min_free;   // smallest dw over free columns (fpen[k] == 0)
  int64_t arg_free;  // its column, -1 if none
};

struct Top2 {
  double a1, a2;   // the two smallest reduced costs s*c[k] - v[k] (a1 <= a2)
  int64_t j1, j2;  // their columns (lexicographic by (value, column)); j2 = -1 when m == 1
};

template <class T>
struct Kernels {
  // One Dijkstra step: for every column k, cand = (s*c[k] - v[k]) + h; if cand < dw[k], dw[k] = cand and
  // pred[k] = row. Then report the minimum of dw over all columns and over free ones (dw[k] + fpen[k]).
  // Scanned columns carry v[k] = -inf and dw[k] = +inf, so they are never updated nor chosen.
  void (*scan)(const T* c, double s, double h, const double* v, double* dw, int32_t* pred, int32_t row,
               const double* fpen, size_t m, ScanResult* out);
  // The two smallest reduced costs of one row (augmenting row reduction, reduction transfer).
  void (*top2)(const T* c, double s, const double* v, size_t m, Top2* out);
  // Column minima of rows [0, rows) restricted to columns [j0, j1): vmin[j] = min(vmin[j], s*C[i][j]) with
  // arg[j] the first row attaining it.
  void (*colmin)(const T* C, size_t rows, size_t stride, size_t j0, size_t j1, double s, double* vmin,
                 int32_t* arg);
};

template <class T>
Kernels<T> kernels_for(LapKernel k);

// Whether this CPU can run kernel k (Auto: always).
bool cpu_has(LapKernel k);
// Resolves Auto to the best kernel this CPU supports.
LapKernel resolve_kernel(LapKernel k);

}  // namespace ffm::lap
