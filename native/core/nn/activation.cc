#include <cmath>
#include <functional>

#include "core/nn/ops.h"
#include "core/thread_pool.h"

namespace ffm::nn {

float activation_value(Activation a, float x) {
  switch (a) {
    case Activation::GeluNew: {
      // 0.5·x·(1 + tanh(u)) == x / (1 + exp(−2u)): one exp instead of a tanh, same value to ~1 ulp.
      const float u2 = 1.5957691216057308f * (x + 0.044715f * x * x * x);  // 2·sqrt(2/pi)·(…)
      return x / (1.0f + std::exp(-u2));
    }
    case Activation::GeluErf:
      return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
    case Activation::Silu:
      return x / (1.0f + std::exp(-x));
    case Activation::Relu:
      return x < 0.0f ? 0.0f : x;  // NaN stays NaN (torch's relu), so a NaN weight is caught, not zeroed
  }
  return x;
}

namespace {
void for_elems(ThreadPool* pool, size_t n, const std::function<void(size_t, size_t)>& fn) {
  if (pool) pool->parallel_for(n, 1 << 14, fn); else fn(0, n);
}
}  // namespace

void activate(ThreadPool* pool, Activation a, float* x, size_t n) {
  for_elems(pool, n, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) x[i] = activation_value(a, x[i]);
  });
}

void gated_activate(ThreadPool* pool, Activation a, const float* gate, float* up, size_t n) {
  for_elems(pool, n, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) up[i] = activation_value(a, gate[i]) * up[i];
  });
}

}  // namespace ffm::nn
