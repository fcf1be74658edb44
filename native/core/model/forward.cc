// One transformer stack, one batch: embed → blocks [from, to) → (final norm → LM head). Each block is a
// short list of nn:: ops; the FF pre-activation is the hook point the merge's features come from.
#include "core/model/forward.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/nn/ops.h"
#include "core/thread_pool.h"

namespace ffm::model {
namespace {

// Per-call scratch: every buffer a block needs, sized once for the batch (several forward jobs may run on
// one Model concurrently, so nothing lives in the Model).
struct Scratch {
  std::vector<float> a;     // normalised input of a sublayer   [R, d]
  std::vector<float> tmp;   // sublayer output before residual  [R, d]
  std::vector<float> qkv;   // fused projections                 [R, qkv_width]
  std::vector<float> att;   // attention output (heads concat)   [R, n_heads·head_dim]
  std::vector<float> up;    // FF pre-activation                 [R, d_ff]
  std::vector<float> gate;  // gated FFs only                    [R, d_ff]
};

void norm(ThreadPool* pool, const ModelSpec& s, const float* x, float* y, size_t rows, const Tensor& w,
          const Tensor& b) {
  if (s.norm == NormKind::LayerNorm)
    nn::layernorm(pool, x, y, rows, s.d_model, w.data(), b.data(), s.norm_eps);
  else
    nn::rmsnorm(pool, x, y, rows, s.d_model, w.data(), s.norm_eps);
}

// Self-attention sublayer: out[R, d] = o_proj(attention(rope(qkv(x)))).
void self_attention(ThreadPool* pool, const ModelSpec& s, const LayerWeights& L, const float* x, float* out,
                    size_t B, size_t T, const std::vector<int32_t>& positions, const uint8_t* key_mask,
                    Scratch& sc) {
  const size_t R = B * T, d = s.d_model, hd = s.head_dim, W = s.qkv_width();
  const size_t qw = s.n_heads * hd, kw = s.n_kv_heads * hd;
  nn::linear(pool, x, R, d, L.qkv_w.data(), L.qkv_b.data(), W, sc.qkv.data());
  float* q = sc.qkv.data();
  float* k = q + qw;
  float* v = k + kw;
  if (s.positions == PositionKind::Rotary) {
    const size_t rd = s.rope_dim ? s.rope_dim : hd;
    nn::rope(pool, q, W, R, positions.data(), s.n_heads, hd, rd, s.rope_theta);
    nn::rope(pool, k, W, R, positions.data(), s.n_kv_heads, hd, rd, s.rope_theta);
  }
  nn::AttentionDims dims{B, T, T, s.n_heads, s.n_kv_heads, hd};
  nn::attention(pool, dims, q, W, k, W, v, W, sc.att.data(), qw, s.causal, key_mask,
                float(1.0 / std::sqrt(double(hd))));
  nn::linear(pool, sc.att.data(), R, qw, L.o_w.data(), L.o_b.data(), d, out);
  // Cross-attention (encoder–decoder) plugs in after this sublayer: xnorm → q from x, kv from the encoder
  // states → nn::attention(causal = false, key_mask = encoder padding) → xo. build_model rejects it for now.
}

// FF sublayer: out[R, d] = w_out · act(…) ; sc.up holds the pre-activation x·w_inᵀ + b_in on return of
// the first product, which is when `on_preact` sees it.
template <typename OnPreact>
void feed_forward(ThreadPool* pool, const ModelSpec& s, const FFWeights& ff, const float* x, float* out, size_t R,
                  Scratch& sc, OnPreact&& on_preact) {
  const size_t d = s.d_model, f = s.d_ff;
  nn::linear(pool, x, R, d, ff.w_in.data(), ff.b_in.data(), f, sc.up.data());
  on_preact(sc.up.data());
  if (s.gated_ff) {
    nn::linear(pool, x, R, d, ff.w_gate.data(), ff.b_gate.data(), f, sc.gate.data());
    nn::gated_activate(pool, s.activation, sc.gate.data(), sc.up.data(), R * f);
  } else {
    nn::activate(pool, s.activation, sc.up.data(), R * f);
  }
  nn::linear(pool, sc.up.data(), R, f, ff.w_out.data(), ff.b_out.data(), d, out);
}

void embed(ThreadPool* pool, const Model& m, const int32_t* ids, size_t B, size_t T, float* x) {
  const ModelSpec& s = m.spec;
  const size_t d = s.d_model;
  const float* te = m.w.tok_emb.data();
  const float* pe = m.w.pos_emb.data();
  auto body = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const size_t t = r % T;
      const float* e = te + size_t(ids[r]) * d;
      float* xr = x + r * d;
      for (size_t i = 0; i < d; ++i) xr[i] = e[i] * s.embed_scale;
      if (s.positions == PositionKind::Learned)
        for (size_t i = 0; i < d; ++i) xr[i] += pe[t * d + i];
      // Sinusoidal positions (Marian) are added here, from a table computed once per call.
    }
  };
  pool->parallel_for(B * T, 64, body);
}

void check_inputs(const Model& m, const ForwardInput& in, const ForwardOptions& o, size_t to) {
  const ModelSpec& s = m.spec;
  if (in.batch == 0 || in.seq == 0) throw Error("INVALID_ARGUMENT", "forward: batch and seq must be positive");
  if (o.from_layer > to)
    throw Error("INVALID_ARGUMENT", "forward: fromLayer (" + std::to_string(o.from_layer) + ") is after toLayer (" +
                                        std::to_string(to) + ")");
  if (o.from_layer > 0 && !in.hidden)
    throw Error("INVALID_ARGUMENT", "forward: starting at layer " + std::to_string(o.from_layer) +
                                        " needs the hidden states entering that layer");
  const bool need_ids = (o.from_layer == 0 && !in.hidden) || o.output == Output::Nll;
  if (need_ids && !in.ids) throw Error("INVALID_ARGUMENT", "forward: token ids are required");
  if (s.positions == PositionKind::Learned && in.seq > s.max_positions)
    throw Error("SEQUENCE_TOO_LONG", "sequence length " + std::to_string(in.seq) + " is longer than the model's " +
                                         std::to_string(s.max_positions) + " positions (max_positions)");
  if (s.positions == PositionKind::Sinusoidal)
    throw Error("UNSUPPORTED_ARCHITECTURE", "sinusoidal positions are not implemented in the forward pass yet");
  if (in.ids) {
    for (size_t r = 0; r < in.batch * in.seq; ++r)
      if (in.ids[r] < 0 || size_t(in.ids[r]) >= s.vocab)
        throw Error("INVALID_ARGUMENT", "token id " + std::to_string(in.ids[r]) + " at position " +
                                            std::to_string(r % in.seq) + " of sequence " + std::to_string(r / in.seq) +
                                            " is outside the vocabulary (size " + std::to_string(s.vocab) + ")");
  }
  for (size_t l : o.capture_layers)
    if (l < o.from_layer || l >= to)
      throw Error("INVALID_ARGUMENT", "forward: cannot capture layer " + std::to_string(l) + ", the pass runs layers " +
                                          std::to_string(o.from_layer) + ".." + std::to_string(to) + " (exclusive)");
}

// NLL of the next token at every position, from the final hidden state, a row block at a time so only
// block·vocab logits ever exist.
void next_token_nll(ThreadPool* pool, const Model& m, const float* h, const int32_t* ids, const uint8_t* mask,
                    size_t B, size_t T, ForwardResult& res) {
  const ModelSpec& s = m.spec;
  const size_t R = B * T, V = s.vocab, d = s.d_model;
  res.nll.assign(B * (T - 1), 0.0f);
  // ~32 MB of logits per block: enough rows for the matmul to run at full speed, bounded for any vocab.
  const size_t block = std::max<size_t>(16, std::min<size_t>(R, (size_t(1) << 23) / V));
  std::vector<float> logits(block * V);
  std::vector<double> row_nll(block);
  for (size_t r0 = 0; r0 < R; r0 += block) {
    const size_t n = std::min(block, R - r0);
    nn::linear(pool, h + r0 * d, n, d, m.w.lm_head_w.data(), m.w.lm_head_b.data(), V, logits.data());
    pool->parallel_for(n, 8, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        const size_t r = r0 + i, b = r / T, t = r % T;
        row_nll[i] = -1;
        if (t + 1 >= T || (mask && !mask[b * T + t + 1])) continue;
        const float* lr = logits.data() + i * V;
        float mx = -std::numeric_limits<float>::infinity();
        for (size_t j = 0; j < V; ++j) mx = std::max(mx, lr[j]);
        double sum = 0;
        for (size_t j = 0; j < V; ++j) sum += double(std::exp(lr[j] - mx));
        row_nll[i] = (double(mx) + std::log(sum)) - double(lr[ids[r + 1]]);
      }
    });
    for (size_t i = 0; i < n; ++i) {
      const size_t r = r0 + i, b = r / T, t = r % T;
      if (t + 1 >= T || (mask && !mask[b * T + t + 1])) continue;
      res.nll[b * (T - 1) + t] = float(row_nll[i]);
      res.nll_sum += row_nll[i];
      res.nll_count += 1;
    }
  }
}

}  // namespace

ForwardResult forward(JobControl& ctl, const Model& m, const ForwardInput& in, const ForwardOptions& o) {
  const ModelSpec& s = m.spec;
  const size_t to = std::min(o.to_layer, s.layers);
  check_inputs(m, in, o, to);
  ThreadPool* pool = &ctl.pool();
  const size_t B = in.batch, T = in.seq, R = B * T, d = s.d_model;
  const uint8_t* fmask = o.feature_mask ? o.feature_mask : in.attention_mask;

  std::vector<int32_t> positions(R);
  for (size_t r = 0; r < R; ++r) positions[r] = int32_t(r % T);

  std::vector<float> x(R * d);
  if (in.hidden) std::copy(in.hidden, in.hidden + R * d, x.begin());
  else embed(pool, m, in.ids, B, T, x.data());

  Scratch sc;
  sc.a.resize(R * d);
  sc.tmp.resize(R * d);
  if (to > o.from_layer) {
    sc.qkv.resize(R * s.qkv_width());
    sc.att.resize(R * s.n_heads * s.head_dim);
    sc.up.resize(R * s.d_ff);
    if (s.gated_ff) sc.gate.resize(R * s.d_ff);
  }

  // Capture buffers: only the feature rows, so memory is rows·d_ff per captured layer for this batch.
  size_t feature_rows = R;
  if (fmask) feature_rows = size_t(std::count_if(fmask, fmask + R, [](uint8_t v) { return v != 0; }));
  std::vector<std::vector<float>> captured(o.capture_layers.size());
  for (auto& c : captured) c.resize(feature_rows * s.d_ff);

  const size_t steps = to - o.from_layer + (o.output == Output::Hidden ? 0 : 1);
  for (size_t l = o.from_layer; l < to; ++l) {
    ctl.check();
    const LayerWeights& L = m.w.layers[l];
    auto capture = [&](const float* up) {
      for (size_t ci = 0; ci < o.capture_layers.size(); ++ci) {
        if (o.capture_layers[ci] != l) continue;
        float* dst = captured[ci].data();
        for (size_t r = 0; r < R; ++r) {
          if (fmask && !fmask[r]) continue;
          std::copy(up + r * s.d_ff, up + (r + 1) * s.d_ff, dst);
          dst += s.d_ff;
        }
      }
    };
    if (s.placement == NormPlacement::Pre) {
      norm(pool, s, x.data(), sc.a.data(), R, L.norm1_w, L.norm1_b);
      self_attention(pool, s, L, sc.a.data(), sc.tmp.data(), B, T, positions, in.attention_mask, sc);
      nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
      norm(pool, s, x.data(), sc.a.data(), R, L.norm2_w, L.norm2_b);
      feed_forward(pool, s, *L.ff, sc.a.data(), sc.tmp.data(), R, sc, capture);
      nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
    } else {  // post-norm: x = norm(x + f(x))
      self_attention(pool, s, L, x.data(), sc.tmp.data(), B, T, positions, in.attention_mask, sc);
      nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
      norm(pool, s, x.data(), x.data(), R, L.norm1_w, L.norm1_b);
      feed_forward(pool, s, *L.ff, x.data(), sc.tmp.data(), R, sc, capture);
      nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
      norm(pool, s, x.data(), x.data(), R, L.norm2_w, L.norm2_b);
    }
    ctl.progress(double(l - o.from_layer + 1), double(steps));
  }
  for (float v : x)
    if (!std::isfinite(v))
      throw Error("NON_FINITE_ACTIVATIONS", "the forward pass produced non-finite hidden states (NaN or Inf)");

  if (o.capture && !o.capture_layers.empty()) {
    std::vector<const float*> ptrs;
    for (auto& c : captured) ptrs.push_back(c.data());
    o.capture->on_batch(ctl, ptrs, feature_rows);
  }

  ForwardResult res;
  if (o.output == Output::Hidden) {
    res.hidden = std::move(x);
    return res;
  }
  ctl.check();
  const float* h = x.data();
  if (s.final_norm) {
    norm(pool, s, x.data(), sc.a.data(), R, m.w.final_norm_w, m.w.final_norm_b);
    h = sc.a.data();
  }
  if (o.output == Output::Logits) {
    res.logits.resize(R * s.vocab);
    nn::linear(pool, h, R, d, m.w.lm_head_w.data(), m.w.lm_head_b.data(), s.vocab, res.logits.data());
  } else {
    if (T < 2) throw Error("INVALID_ARGUMENT", "forward: NLL needs sequences of at least 2 tokens");
    next_token_nll(pool, m, h, in.ids, in.attention_mask, B, T, res);
  }
  ctl.progress(double(steps), double(steps));
  return res;
}

}  // namespace ffm::model
