// Single-precision matrix multiply, the one kernel every heavy routine of ffmerge runs on.
//
//   C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C      (row-major, op = identity or transpose)
//
// With trans_a, A is stored K×M (lda ≥ M); with trans_b, B is stored N×K (ldb ≥ K). beta == 0 means C is
// written without being read (it may hold garbage or NaN).
#pragma once
#include <cstddef>
#include <string>

namespace ffm {

class ThreadPool;

void sgemm(ThreadPool* pool, bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha, const float* A,
           size_t lda, const float* B, size_t ldb, float beta, float* C, size_t ldc);

// Name of the micro-kernel sgemm dispatches to on this CPU ("avx512", "avx2", "portable").
std::string sgemm_kernel_name();

}  // namespace ffm
