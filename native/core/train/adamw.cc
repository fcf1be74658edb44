#include "core/train/adamw.h"

#include <cmath>
#include <algorithm>
#include <functional>
#include <vector>

#include "core/thread_pool.h"

namespace ffm::train {

namespace {
constexpr double kPi = 3.14159265358979323846;  // M_PI is POSIX, not C++: MSVC and strict MinGW lack it
}  // namespace

double learning_rate(const AdamWOptions& o, size_t step, size_t steps) {
  if (o.warmup > 0 && step < o.warmup) return double(o.lr) * double(step + 1) / double(o.warmup);
  if (o.schedule == Schedule::Constant || steps <= o.warmup + 1) return o.lr;
  const double progress = double(step - o.warmup) / double(steps - o.warmup - 1);
  const double lo = double(o.lr) * o.min_lr_ratio;
  return lo + 0.5 * (double(o.lr) - lo) * (1.0 + std::cos(kPi * progress));
}

double grad_norm(ThreadPool* pool, const ParamSet& ps) {
  double total = 0;
  for (const auto& p : ps.params) {
    if (p.g.empty()) continue;
    // per-tensor sum in fixed chunks (deterministic), chunks in parallel
    const size_t n = p.g.size(), chunks = std::min<size_t>(n, 64);
    std::vector<double> part(chunks, 0.0);
    pool->parallel_for(chunks, 1, [&](size_t c0, size_t c1) {
      for (size_t c = c0; c < c1; ++c) {
        double s = 0;
        for (size_t i = c * n / chunks; i < (c + 1) * n / chunks; ++i) s += double(p.g[i]) * p.g[i];
        part[c] = s;
      }
    });
    for (double s : part) total += s;
  }
  return std::sqrt(total);
}

double adamw_step(ThreadPool* pool, ParamSet& ps, const AdamWOptions& o, double lr, size_t t) {
  const double norm = grad_norm(pool, ps);
  const float gscale = (o.clip > 0 && norm > o.clip) ? float(o.clip / (norm + 1e-6)) : 1.0f;
  // torch.optim.AdamW: p ← p·(1 − lr·wd); p ← p − lr/bc1 · m / (√v / √bc2 + eps)
  const double bc1 = 1.0 - std::pow(double(o.beta1), double(t));
  const double bc2 = 1.0 - std::pow(double(o.beta2), double(t));
  const float step_size = float(lr / bc1);
  const float sqrt_bc2 = float(std::sqrt(bc2));
  for (auto& p : ps.params) {
    if (p.g.empty()) continue;
    if (p.m.empty()) {
      p.m.assign(p.w.size(), 0.0f);
      p.v.assign(p.w.size(), 0.0f);
    }
    const float decay = p.matrix ? float(1.0 - lr * o.weight_decay) : 1.0f;
    pool->parallel_for(p.w.size(), 1 << 14, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        const float g = p.g[i] * gscale;
        p.m[i] = o.beta1 * p.m[i] + (1.0f - o.beta1) * g;
        p.v[i] = o.beta2 * p.v[i] + (1.0f - o.beta2) * g * g;
        p.w[i] = p.w[i] * decay - step_size * p.m[i] / (std::sqrt(p.v[i]) / sqrt_bc2 + o.eps);
      }
    });
  }
  return norm;
}

}  // namespace ffm::train
