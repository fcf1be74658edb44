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
               float scale, size_t window) {
  if (dm.n_kv_heads == 0 || dm.n_heads % dm.n_kv_heads != 0)
    throw Error("INVALID_ARGUMENT", "attention: the number of heads must be a multiple of the number of KV heads");
  if (causal && dm.seq_q > dm.seq_k) throw Error("INVALID_ARGUMENT", "attention: causal needs seq_q <= seq_k");
  if (window && !causal) throw Error("INVALID_ARGUMENT", "attention: a sliding window needs causal attention");
  const size_t group = dm.n_heads / dm.n_kv_heads;
  const size_t hd = dm.head_dim, sq = dm.seq_q, sk = dm.seq_k;
  // One task per (sequence, head): scores = q_h·k_hᵀ, masked softmax per row, out_h = p·v_h. The two
  // products go through sgemm single-threaded (the pool is already busy with other (b, h) pairs). Causal
  // attention runs in query blocks that only multiply against the keys the block can see (j < i1), so the
  // upper triangle is mostly never computed.
  const size_t qblock = causal ? 64 : sq;
  // causal with seq_q < seq_k (decoding on a KV cache): the queries are the last seq_q positions
  const size_t off = causal ? sk - sq : 0;
  auto body = [&](size_t t0, size_t t1) {
    std::vector<float> p(std::min(qblock, sq) * sk);
    for (size_t t = t0; t < t1; ++t) {
      const size_t b = t / dm.n_heads, h = t % dm.n_heads, g = h / group;
      const float* kh = k + b * sk * ldk + g * hd;
      const float* vh = v + b * sk * ldv + g * hd;
      const uint8_t* km = key_mask ? key_mask + b * sk : nullptr;
      for (size_t i0 = 0; i0 < sq; i0 += qblock) {
        const size_t i1 = std::min(sq, i0 + qblock), rows = i1 - i0;
        const size_t nk = causal ? i1 + off : sk;  // keys this block can see
        const float* qh = q + (b * sq + i0) * ldq + h * hd;
        float* oh = out + (b * sq + i0) * ldo + h * hd;
        sgemm(nullptr, false, true, rows, nk, hd, scale, qh, ldq, kh, ldk, 0.0f, p.data(), nk);
        for (size_t r = 0; r < rows; ++r) {
          const size_t i = i0 + r;
          float* pr = p.data() + r * nk;
          const size_t jend = causal ? i + 1 + off : nk;
          // sliding window: keys before jbeg are out of reach (jend − j ≤ window ⇔ p − j < window)
          const size_t jbeg = window && jend > window ? jend - window : 0;
          float mx = -std::numeric_limits<float>::infinity();
          bool any = false;
          for (size_t j = jbeg; j < jend; ++j)
            if (!km || km[j]) {
              any = true;
              mx = std::max(mx, pr[j]);
            }
          // No key to look at (leading padding): the row attends to nothing. Told apart from a row whose scores
          // are all NaN (a NaN weight), which std::max never picks: that row must come out NaN, as in PyTorch,
          // so the forward pass reports non-finite activations instead of silently zeroing the head.
          if (!any) {
            std::fill(pr, pr + nk, 0.0f);
            continue;
          }
          double sum = 0;
          for (size_t j = 0; j < nk; ++j) {
            if (j >= jbeg && j < jend && (!km || km[j])) {
              pr[j] = std::exp(pr[j] - mx);
              sum += pr[j];
            } else {
              pr[j] = 0.0f;
            }
          }
          const float inv = float(1.0 / sum);
          for (size_t j = jbeg; j < jend; ++j) pr[j] *= inv;
        }
        sgemm(nullptr, false, false, rows, hd, nk, 1.0f, p.data(), nk, vh, ldv, 0.0f, oh, ldo);
      }
    }
  };
  const size_t tasks = dm.batch * dm.n_heads;
  if (pool) pool->parallel_for(tasks, 1, body); else body(0, tasks);
}

}  // namespace ffm::nn
