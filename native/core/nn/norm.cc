#include <cmath>
#include <functional>

#include "core/nn/ops.h"
#include "core/thread_pool.h"

namespace ffm::nn {
namespace {
void for_rows(ThreadPool* pool, size_t rows, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (pool) pool->parallel_for(rows, grain, fn); else fn(0, rows);
}
}  // namespace

void layernorm(ThreadPool* pool, const float* x, float* y, size_t rows, size_t d, const float* gamma,
               const float* beta, float eps) {
  for_rows(pool, rows, 64, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      float* yr = y + r * d;
      // Two passes in double: the variance of activations with a large mean stays exact.
      double mean = 0;
      for (size_t i = 0; i < d; ++i) mean += xr[i];
      mean /= double(d);
      double var = 0;
      for (size_t i = 0; i < d; ++i) {
        double c = xr[i] - mean;
        var += c * c;
      }
      var /= double(d);
      const float inv = float(1.0 / std::sqrt(var + double(eps)));
      const float m = float(mean);
      for (size_t i = 0; i < d; ++i) {
        float v = (xr[i] - m) * inv;
        if (gamma) v *= gamma[i];
        if (beta) v += beta[i];
        yr[i] = v;
      }
    }
  });
}

void rmsnorm(ThreadPool* pool, const float* x, float* y, size_t rows, size_t d, const float* gamma, float eps) {
  for_rows(pool, rows, 64, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      float* yr = y + r * d;
      double ss = 0;
      for (size_t i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
      const float inv = float(1.0 / std::sqrt(ss / double(d) + double(eps)));
      for (size_t i = 0; i < d; ++i) yr[i] = gamma ? (xr[i] * inv) * gamma[i] : xr[i] * inv;
    }
  });
}

void rmsnorm_heads(ThreadPool* pool, float* x, size_t ld, size_t rows, size_t heads, size_t head_dim,
                   const float* gamma, float eps) {
  // row·heads + h is head h of row `row`; rmsnorm of one head reads it whole before writing, so in place is safe
  for_rows(pool, rows * heads, 64, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      float* h = x + (r / heads) * ld + (r % heads) * head_dim;
      rmsnorm(nullptr, h, h, 1, head_dim, gamma, eps);
    }
  });
}

}  // namespace ffm::nn
