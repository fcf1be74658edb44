// The float64 product behind the blocked factorisations (core/cholesky.cc, core/select.cc):
//
//   C[M×N] −= A[M×K] · B[K×N]      A(i, t) = a[i·ars + t·acs]; B and C row-major (ldb, ldc)
//
// Single-threaded: callers split C into row blocks over their pool. Register tiles on packed, cache-sized
// slices of A (256 deep); each entry's products are summed from zero in t order within a slice and the slices
// subtracted in turn, so the result depends on the sizes alone, never on the thread count or the split.
// AVX2+FMA tiles are picked at run time where the CPU has them (last bits differ from the SSE2 baseline's).
#pragma once
#include <cstddef>

namespace ffm {

using DgemmSub = void (*)(size_t M, size_t N, size_t K, const double* a, size_t ars, size_t acs, const double* b,
                          size_t ldb, double* c, size_t ldc);

// The best kernel for this CPU, chosen once.
DgemmSub dgemm_sub();

}  // namespace ffm
