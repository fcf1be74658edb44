// Placeholder-free but simple GEMM: correct for every shape and transpose, parallel over row blocks.
// The packed, SIMD version replaces the body of sgemm; the interface stays.
#include "core/gemm.h"

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"

namespace ffm {

void sgemm(ThreadPool* pool, bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha, const float* A,
           size_t lda, const float* B, size_t ldb, float beta, float* C, size_t ldc) {
  auto rows = [&](size_t i0, size_t i1) {
    std::vector<float> acc(N);
    for (size_t i = i0; i < i1; ++i) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (size_t k = 0; k < K; ++k) {
        float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        if (trans_b) {
          for (size_t j = 0; j < N; ++j) acc[j] += a * B[j * ldb + k];
        } else {
          const float* b = B + k * ldb;
          for (size_t j = 0; j < N; ++j) acc[j] += a * b[j];
        }
      }
      float* c = C + i * ldc;
      for (size_t j = 0; j < N; ++j) c[j] = alpha * acc[j] + (beta == 0.0f ? 0.0f : beta * c[j]);
    }
  };
  if (pool) pool->parallel_for(M, 16, rows); else rows(0, M);
}

std::string sgemm_kernel_name() { return "portable"; }

}  // namespace ffm
