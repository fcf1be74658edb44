#include <functional>

#include "core/gemm.h"
#include "core/nn/ops.h"
#include "core/thread_pool.h"

namespace ffm::nn {

void linear(ThreadPool* pool, const float* x, size_t rows, size_t in, Weight w, const float* b, size_t out,
            float* y, size_t ldx, size_t ldy) {
  if (ldx == 0) ldx = in;
  if (ldy == 0) ldy = out;
  if (rows == 0 || out == 0) return;
  // x[rows,in] · w[out,in]ᵀ: the weight is the transposed B operand, read in place (no repacking here).
  // A 16-bit weight is widened while the GEMM packs it: never a float32 copy of the whole matrix.
  if (w.h16) sgemm_bt16(pool, false, rows, out, in, 1.0f, x, ldx, w.h16, w.type, in, 0.0f, y, ldy);
  else sgemm(pool, false, true, rows, out, in, 1.0f, x, ldx, w.f32, in, 0.0f, y, ldy);
  if (!b) return;
  auto add_bias = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      float* yr = y + r * ldy;
      for (size_t j = 0; j < out; ++j) yr[j] += b[j];
    }
  };
  if (pool) pool->parallel_for(rows, 64, add_bias); else add_bias(0, rows);
}

void add_inplace(ThreadPool* pool, float* y, const float* x, size_t n) {
  auto add = [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) y[i] += x[i];
  };
  if (pool) pool->parallel_for(n, 1 << 15, add); else add(0, n);
}

}  // namespace ffm::nn
