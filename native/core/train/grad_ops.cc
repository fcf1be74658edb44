#include "core/train/grad_ops.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "core/gemm.h"
#include "core/thread_pool.h"

namespace ffm::train {
namespace {

void for_rows(ThreadPool* pool, size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (pool) pool->parallel_for(n, grain, fn); else fn(0, n);
}

// acc[width] += Σ_r row_terms(r): rows split in a fixed number of chunks, each with its own double partial,
// summed in chunk order (deterministic for any pool size; no two threads write one accumulator).
void reduce_rows(ThreadPool* pool, size_t rows, size_t width, float* acc,
                 const std::function<void(size_t r, double* part)>& add_row) {
  if (!acc || rows == 0) return;
  const size_t chunks = std::min<size_t>(rows, 32);
  std::vector<double> parts(chunks * width, 0.0);
  for_rows(pool, chunks, 1, [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; ++c) {
      double* part = parts.data() + c * width;
      for (size_t r = c * rows / chunks; r < (c + 1) * rows / chunks; ++r) add_row(r, part);
    }
  });
  for (size_t i = 0; i < width; ++i) {
    double s = 0;
    for (size_t c = 0; c < chunks; ++c) s += parts[c * width + i];
    acc[i] += float(s);
  }
}

}  // namespace

void linear_backward(ThreadPool* pool, const float* x, const float* w, const float* dy, size_t rows, size_t in,
                     size_t out, float* dx, float* dw, float* db) {
  if (rows == 0) return;
  if (dx) sgemm(pool, false, false, rows, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
  if (dw) sgemm(pool, true, false, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dw, in);
  reduce_rows(pool, rows, out, db, [&](size_t r, double* part) {
    const float* y = dy + r * out;
    for (size_t j = 0; j < out; ++j) part[j] += y[j];
  });
}

// Both norms recompute their row statistics from x in double, as the forward computes them.
void layernorm_backward(ThreadPool* pool, const float* x, const float* dy, size_t rows, size_t d, const float* gamma,
                        float eps, float* dx, float* dgamma, float* dbeta) {
  std::vector<float> mean(rows), rstd(rows);
  for_rows(pool, rows, 16, [&](size_t r0, size_t r1) {
    std::vector<double> g(d);
    for (size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      const float* dyr = dy + r * d;
      double mu = 0;
      for (size_t i = 0; i < d; ++i) mu += xr[i];
      mu /= double(d);
      double var = 0;
      for (size_t i = 0; i < d; ++i) var += (xr[i] - mu) * (xr[i] - mu);
      const double rs = 1.0 / std::sqrt(var / double(d) + double(eps));
      mean[r] = float(mu), rstd[r] = float(rs);
      // dx = rstd · (g − mean(g) − x̂·mean(g·x̂)), g = dy·gamma
      double mg = 0, mgx = 0;
      for (size_t i = 0; i < d; ++i) {
        g[i] = double(dyr[i]) * (gamma ? gamma[i] : 1.0f);
        const double xh = (xr[i] - mu) * rs;
        mg += g[i];
        mgx += g[i] * xh;
      }
      mg /= double(d), mgx /= double(d);
      float* dxr = dx + r * d;
      for (size_t i = 0; i < d; ++i) {
        const double xh = (xr[i] - mu) * rs;
        dxr[i] += float(rs * (g[i] - mg - xh * mgx));
      }
    }
  });
  reduce_rows(pool, rows, d, dgamma, [&](size_t r, double* part) {
    const float* xr = x + r * d;
    const float* dyr = dy + r * d;
    for (size_t i = 0; i < d; ++i) part[i] += double(dyr[i]) * ((double(xr[i]) - mean[r]) * rstd[r]);
  });
  reduce_rows(pool, rows, d, dbeta, [&](size_t r, double* part) {
    const float* dyr = dy + r * d;
    for (size_t i = 0; i < d; ++i) part[i] += dyr[i];
  });
}

void rmsnorm_backward(ThreadPool* pool, const float* x, const float* dy, size_t rows, size_t d, const float* gamma,
                      float eps, float* dx, float* dgamma) {
  std::vector<float> rinv(rows);
  for_rows(pool, rows, 16, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      const float* dyr = dy + r * d;
      double ss = 0;
      for (size_t i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
      const double ri = 1.0 / std::sqrt(ss / double(d) + double(eps));
      rinv[r] = float(ri);
      // y = x·ri·gamma: dx = ri·(g − x̂·mean(g·x̂)), g = dy·gamma, x̂ = x·ri
      double mgx = 0;
      for (size_t i = 0; i < d; ++i) mgx += double(dyr[i]) * (gamma ? gamma[i] : 1.0f) * xr[i] * ri;
      mgx /= double(d);
      float* dxr = dx + r * d;
      for (size_t i = 0; i < d; ++i) {
        const double g = double(dyr[i]) * (gamma ? gamma[i] : 1.0f);
        dxr[i] += float(ri * (g - xr[i] * ri * mgx));
      }
    }
  });
  reduce_rows(pool, rows, d, dgamma, [&](size_t r, double* part) {
    const float* xr = x + r * d;
    const float* dyr = dy + r * d;
    for (size_t i = 0; i < d; ++i) part[i] += double(dyr[i]) * xr[i] * rinv[r];
  });
}

// d act(x) / dx, matching nn::activation_value's formulas.
static float activation_derivative(nn::Activation a, float x) {
  switch (a) {
    case nn::Activation::GeluNew: {
      // forward: x·σ(u2), u2 = 2·sqrt(2/π)·(x + 0.044715x³)
      const float u2 = 1.5957691216057308f * (x + 0.044715f * x * x * x);
      const float s = 1.0f / (1.0f + std::exp(-u2));
      return s + x * s * (1.0f - s) * 1.5957691216057308f * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case nn::Activation::GeluErf: {
      const float pdf = 0.3989422804014327f * std::exp(-0.5f * x * x);
      return 0.5f * (1.0f + std::erf(x * 0.7071067811865476f)) + x * pdf;
    }
    case nn::Activation::Silu: {
      const float s = 1.0f / (1.0f + std::exp(-x));
      return s * (1.0f + x * (1.0f - s));
    }
    case nn::Activation::Relu:
      return x > 0.0f ? 1.0f : 0.0f;
  }
  return 1.0f;
}

void activation_backward(ThreadPool* pool, nn::Activation a, const float* pre, const float* dh, float* dpre, size_t n) {
  for_rows(pool, n, 1 << 14, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) dpre[i] = dh[i] * activation_derivative(a, pre[i]);
  });
}

void gated_backward(ThreadPool* pool, nn::Activation a, const float* gate, const float* up, const float* dh, float* dgate,
                    float* dup, size_t n) {
  for_rows(pool, n, 1 << 14, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      dup[i] = dh[i] * nn::activation_value(a, gate[i]);
      dgate[i] = dh[i] * up[i] * activation_derivative(a, gate[i]);
    }
  });
}

void rope_backward(ThreadPool* pool, float* dx, size_t ld, size_t rows, const int32_t* positions, size_t n_heads,
                   size_t head_dim, size_t rot_dim, float theta, const nn::RopeScaling& scaling) {
  // The transpose of a rotation by angle a is the rotation by −a; nn::rope computes the angle as pos·inv_freq
  // in float, and (−pos)·inv_freq is exactly −(pos·inv_freq), so the negated positions give the inverse.
  std::vector<int32_t> neg(rows);
  for (size_t r = 0; r < rows; ++r) neg[r] = -positions[r];
  nn::rope(pool, dx, ld, rows, neg.data(), n_heads, head_dim, rot_dim, theta, scaling);
}

void attention_forward(ThreadPool* pool, const AttnDims& dm, const float* qkv, size_t W, float* probs, float* out,
                       float scale, size_t window) {
  const size_t T = dm.T, hd = dm.hd, group = dm.H / dm.KV, qw = dm.H * hd, kw = dm.KV * hd;
  auto body = [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      const size_t b = t / dm.H, h = t % dm.H, g = h / group;
      const float* q = qkv + b * T * W + h * hd;
      const float* k = qkv + b * T * W + qw + g * hd;
      const float* v = qkv + b * T * W + qw + kw + g * hd;
      float* p = probs + (b * dm.H + h) * T * T;
      sgemm(nullptr, false, true, T, T, hd, scale, q, W, k, W, 0.0f, p, T);
      for (size_t i = 0; i < T; ++i) {
        float* pr = p + i * T;
        const size_t jend = dm.causal ? i + 1 : T, jbeg = dm.causal && window && jend > window ? jend - window : 0;
        float mx = -std::numeric_limits<float>::infinity();
        for (size_t j = jbeg; j < jend; ++j) mx = std::max(mx, pr[j]);
        double sum = 0;
        for (size_t j = 0; j < T; ++j) {
          if (j >= jbeg && j < jend) {
            pr[j] = std::exp(pr[j] - mx);
            sum += pr[j];
          } else {
            pr[j] = 0.0f;
          }
        }
        const float inv = float(1.0 / sum);
        for (size_t j = jbeg; j < jend; ++j) pr[j] *= inv;
      }
      sgemm(nullptr, false, false, T, hd, T, 1.0f, p, T, v, W, 0.0f, out + b * T * qw + h * hd, qw);
    }
  };
  const size_t tasks = dm.B * dm.H;
  if (pool) pool->parallel_for(tasks, 1, body); else body(0, tasks);
}

void attention_backward(ThreadPool* pool, const AttnDims& dm, const float* qkv, size_t W, const float* probs,
                        const float* dout, float* dqkv, float scale) {
  const size_t T = dm.T, hd = dm.hd, group = dm.H / dm.KV, qw = dm.H * hd, kw = dm.KV * hd;
  // One task per (sequence, kv head): the query heads of a group all add into that kv head's dK/dV, so they
  // run in one task and no two tasks write the same columns.
  auto body = [&](size_t t0, size_t t1) {
    std::vector<float> dp(T * T);
    for (size_t t = t0; t < t1; ++t) {
      const size_t b = t / dm.KV, g = t % dm.KV;
      const float* base = qkv + b * T * W;
      float* dbase = dqkv + b * T * W;
      const float* k = base + qw + g * hd;
      const float* v = base + qw + kw + g * hd;
      float* dk = dbase + qw + g * hd;
      float* dv = dbase + qw + kw + g * hd;
      for (size_t i = 0; i < T; ++i) {
        std::fill(dk + i * W, dk + i * W + hd, 0.0f);
        std::fill(dv + i * W, dv + i * W + hd, 0.0f);
      }
      for (size_t h = g * group; h < (g + 1) * group; ++h) {
        const float* p = probs + (b * dm.H + h) * T * T;
        const float* q = base + h * hd;
        const float* dO = dout + b * T * qw + h * hd;
        float* dq = dbase + h * hd;
        // dP = dO·Vᵀ ; dV += Pᵀ·dO
        sgemm(nullptr, false, true, T, T, hd, 1.0f, dO, qw, v, W, 0.0f, dp.data(), T);
        sgemm(nullptr, true, false, T, hd, T, 1.0f, p, T, dO, qw, 1.0f, dv, W);
        // softmax backward: dS = P ⊙ (dP − Σ_j dP·P) (masked entries have P = 0, so dS = 0 there)
        for (size_t i = 0; i < T; ++i) {
          const float* pr = p + i * T;
          float* dr = dp.data() + i * T;
          double dot = 0;
          const size_t jend = dm.causal ? i + 1 : T;  // P is 0 past it
          for (size_t j = 0; j < jend; ++j) dot += double(pr[j]) * dr[j];
          for (size_t j = 0; j < T; ++j) dr[j] = pr[j] * (dr[j] - float(dot));
        }
        // S = scale·Q·Kᵀ: dQ = scale·dS·K ; dK += scale·dSᵀ·Q
        sgemm(nullptr, false, false, T, hd, T, scale, dp.data(), T, k, W, 0.0f, dq, W);
        sgemm(nullptr, true, false, T, hd, T, scale, dp.data(), T, q, W, 1.0f, dk, W);
      }
    }
  };
  const size_t tasks = dm.B * dm.KV;
  if (pool) pool->parallel_for(tasks, 1, body); else body(0, tasks);
}

double lm_head_loss(ThreadPool* pool, const float* h, size_t rows, size_t d, const float* W, const float* b, size_t V,
                    const int32_t* targets, float grad_scale, float* dh, float* dW, float* db) {
  // ~16 MB of logits per block: rows enough for a fast matmul, bounded for any vocabulary.
  const size_t block = std::max<size_t>(16, std::min<size_t>(rows, (size_t(1) << 22) / std::max<size_t>(V, 1)));
  std::vector<float> logits(block * V);
  std::vector<double> row_nll(block);
  double total = 0;
  for (size_t r0 = 0; r0 < rows; r0 += block) {
    const size_t n = std::min(block, rows - r0);
    nn::linear(pool, h + r0 * d, n, d, W, b, V, logits.data());
    for_rows(pool, n, 8, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        float* lr = logits.data() + i * V;
        const int32_t tg = targets[r0 + i];
        if (tg < 0) {
          row_nll[i] = 0;
          if (dh) std::fill(lr, lr + V, 0.0f);
          continue;
        }
        float mx = -std::numeric_limits<float>::infinity();
        for (size_t j = 0; j < V; ++j) mx = std::max(mx, lr[j]);
        double sum = 0;
        for (size_t j = 0; j < V; ++j) sum += double(std::exp(lr[j] - mx));
        row_nll[i] = (double(mx) - double(lr[tg])) + std::log(sum);  // the difference first, as forward.cc
        if (!dh) continue;
        // d nll / d logit_j = softmax_j − [j = target]
        const float inv = float(1.0 / sum);
        for (size_t j = 0; j < V; ++j) lr[j] = std::exp(lr[j] - mx) * inv * grad_scale;
        lr[tg] -= grad_scale;
      }
    });
    for (size_t i = 0; i < n; ++i) total += row_nll[i];
    if (!dh) continue;
    // logits = h·Wᵀ + b: dh = dlogits·W (written), dW += dlogitsᵀ·h, db += Σ rows
    sgemm(pool, false, false, n, d, V, 1.0f, logits.data(), V, W, d, 0.0f, dh + r0 * d, d);
    if (dW) sgemm(pool, true, false, V, d, n, 1.0f, logits.data(), V, h + r0 * d, d, 1.0f, dW, d);
    reduce_rows(pool, n, V, db, [&](size_t r, double* part) {
      const float* lr = logits.data() + r * V;
      for (size_t j = 0; j < V; ++j) part[j] += lr[j];
    });
  }
  return total;
}

void embedding_backward(const float* dx, const int32_t* ids, size_t rows, size_t T, size_t d, float scale,
                        float* dtok, float* dpos) {
  // Serial: rows·d adds, and two rows with one token id must not race.
  for (size_t r = 0; r < rows; ++r) {
    const float* g = dx + r * d;
    if (dtok) {
      float* e = dtok + size_t(ids[r]) * d;
      for (size_t i = 0; i < d; ++i) e[i] += scale * g[i];
    }
    if (dpos) {
      float* p = dpos + (r % T) * d;
      for (size_t i = 0; i < d; ++i) p[i] += g[i];
    }
  }
}

}  // namespace ffm::train
