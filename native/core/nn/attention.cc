#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/nn/ops.h"
#include "core/thread_pool.h"

namespace ffm::nn {

void attention(ThreadPool* pool, const AttentionDims& dm, const float* q, size_t ldq, const float* k, size_t ldk,
               const float* v, size_t ldv, float* out, size_t ldo, bool causal, const uint8_t* key_mask,
               float scale) {
  if (dm.n_kv_heads == 0 || dm.n_heads % dm.n_kv_heads != 0)
    throw Error("INVALID_ARGUMENT", "attention: the number of heads must be a multiple of the number of KV heads");
  if (causal && dm.seq_q != dm.seq_k) throw Error("INVALID_ARGUMENT", "attention: causal needs seq_q == seq_k");
  const size_t group = dm.n_heads / dm.n_kv_heads;
  const size_t hd = dm.head_dim, sq = dm.seq_q, sk = dm.seq_k;
  // One task per (sequence, head): scores = q_h·k_hᵀ, masked softmax per row, out_h = p·v_h. The two
  // products go through sgemm single-threaded (the pool is already busy with other (b, h) pairs).
  auto body = [&](size_t t0, size_t t1) {
    std::vector<float> p(sq * sk);
    for (size_t t = t0; t < t1; ++t) {
      const size_t b = t / dm.n_heads, h = t % dm.n_heads, g = h / group;
      const float* qh = q + b * sq * ldq + h * hd;
      const float* kh = k + b * sk * ldk + g * hd;
      const float* vh = v + b * sk * ldv + g * hd;
      float* oh = out + b * sq * ldo + h * hd;
      const uint8_t* km = key_mask ? key_mask + b * sk : nullptr;
      sgemm(nullptr, false, true, sq, sk, hd, scale, qh, ldq, kh, ldk, 0.0f, p.data(), sk);
      for (size_t i = 0; i < sq; ++i) {
        float* pr = p.data() + i * sk;
        const size_t jend = causal ? i + 1 : sk;
        float mx = -std::numeric_limits<float>::infinity();
        for (size_t j = 0; j < jend; ++j)
          if (!km || km[j]) mx = std::max(mx, pr[j]);
        if (mx == -std::numeric_limits<float>::infinity()) {  // no key to look at (e.g. leading padding)
          std::fill(pr, pr + sk, 0.0f);
          continue;
        }
        double sum = 0;
        for (size_t j = 0; j < sk; ++j) {
          if (j < jend && (!km || km[j])) {
            pr[j] = std::exp(pr[j] - mx);
            sum += pr[j];
          } else {
            pr[j] = 0.0f;
          }
        }
        const float inv = float(1.0 / sum);
        for (size_t j = 0; j < jend; ++j) pr[j] *= inv;
      }
      sgemm(nullptr, false, false, sq, hd, sk, 1.0f, p.data(), sk, vh, ldv, 0.0f, oh, ldo);
    }
  };
  const size_t tasks = dm.batch * dm.n_heads;
  if (pool) pool->parallel_for(tasks, 1, body); else body(0, tasks);
}

}  // namespace ffm::nn
