// Single-precision matrix multiply, the one kernel every heavy routine of ffmerge runs on.
//
//   C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C      (row-major, op = identity or transpose)
//
// With trans_a, A is stored K×M (lda ≥ M); with trans_b, B is stored N×K (ldb ≥ K). beta == 0 means C is
// written without being read (it may hold garbage or NaN).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/half.h"

namespace ffm {

class ThreadPool;

// Inside a CancelScope (core/job.h), sgemm and sgemm_bt16 poll its job's cancel flag between cache blocks and
// throw Cancelled (C partly written), as sgemm_with_kernel does with a `ctl`.
void sgemm(ThreadPool* pool, bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha, const float* A,
           size_t lda, const float* B, size_t ldb, float beta, float* C, size_t ldc);

// sgemm with a transposed 16-bit B: B is stored N×K (ldb ≥ K) in F16 or BF16, e.g. a Linear weight [out, in]
// kept as the checkpoint stored it. Its elements are widened to float32 while B is packed (or, for a few rows
// of A, while its rows are read), and everything else is sgemm's: the result equals sgemm(trans_b = true) on
// the widened B bit for bit. `kernel` as in sgemm_with_kernel (nullptr: FFMERGE_GEMM_KERNEL or the best).
void sgemm_bt16(ThreadPool* pool, bool trans_a, size_t M, size_t N, size_t K, float alpha, const float* A, size_t lda,
                const uint16_t* B, Half type, size_t ldb, float beta, float* C, size_t ldc, const char* kernel = nullptr);

// Name of the micro-kernel sgemm dispatches to on this CPU ("avx512", "avx2", "portable").
std::string sgemm_kernel_name();

}  // namespace ffm
