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
  std::vector<float> xkv;   // cross-attention keys/values of the encoder states, uncached calls [B·S, 2·kv]
};

void norm(ThreadPool* pool, const ModelSpec& s, const float* x, float* y, size_t rows, const Tensor& w,
          const Tensor& b) {
  if (s.norm == NormKind::LayerNorm)
    nn::layernorm(pool, x, y, rows, s.d_model, w.data(), b.data(), s.norm_eps);
  else
    nn::rmsnorm(pool, x, y, rows, s.d_model, w.data(), s.norm_eps);
}

// Self-attention on a KV cache: the new T positions' keys/values are appended to layer l's cache, then each
// sequence's queries attend to its whole cached prefix (causal, offset by the cache length).
void cached_attention(ThreadPool* pool, const ModelSpec& s, KVCache& cache, size_t l, const float* q,
                      const float* k, const float* v, size_t W, size_t B, size_t T, float* att) {
  const size_t hd = s.head_dim, qw = s.n_heads * hd, kw = s.n_kv_heads * hd, cap = cache.capacity;
  const size_t past = cache.length;
  if (past + T > cap)
    throw Error("SEQUENCE_TOO_LONG", "decoding past the KV cache capacity of " + std::to_string(cap) + " positions");
  float* ck = cache.k[l].data();
  float* cv = cache.v[l].data();
  for (size_t b = 0; b < B; ++b)
    for (size_t t = 0; t < T; ++t) {
      const size_t r = b * T + t, c = b * cap + past + t;
      std::copy(k + r * W, k + r * W + kw, ck + c * kw);
      std::copy(v + r * W, v + r * W + kw, cv + c * kw);
    }
  const float scale = float(1.0 / std::sqrt(double(hd)));
  pool->parallel_for(B, 1, [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      nn::AttentionDims dims{1, T, past + T, s.n_heads, s.n_kv_heads, hd};
      nn::attention(nullptr, dims, q + b * T * W, W, ck + b * cap * kw, kw, cv + b * cap * kw, kw, att + b * T * qw,
                    qw, true, nullptr, scale, s.window(l));
    }
  });
}

// Self-attention sublayer: out[R, d] = o_proj(attention(rope(qkv(x)))).
void self_attention(ThreadPool* pool, const ModelSpec& s, const LayerWeights& L, const float* x, float* out,
                    size_t B, size_t T, const std::vector<int32_t>& positions, const uint8_t* key_mask,
                    Scratch& sc, KVCache* cache, size_t layer) {
  const size_t R = B * T, d = s.d_model, hd = s.head_dim, W = s.qkv_width();
  const size_t qw = s.n_heads * hd, kw = s.n_kv_heads * hd;
  nn::linear(pool, x, R, d, L.qkv_w.weight(), L.qkv_b.data(), W, sc.qkv.data());
  float* q = sc.qkv.data();
  float* k = q + qw;
  float* v = k + kw;
  if (s.qk_norm) {
    nn::rmsnorm_heads(pool, q, W, R, s.n_heads, hd, L.q_norm_w.data(), s.norm_eps);
    nn::rmsnorm_heads(pool, k, W, R, s.n_kv_heads, hd, L.k_norm_w.data(), s.norm_eps);
  }
  if (s.positions == PositionKind::Rotary) {
    const size_t rd = s.rope_dim ? s.rope_dim : hd;
    nn::rope(pool, q, W, R, positions.data(), s.n_heads, hd, rd, s.rope_theta, s.rope_scaling);
    nn::rope(pool, k, W, R, positions.data(), s.n_kv_heads, hd, rd, s.rope_theta, s.rope_scaling);
  }
  if (cache) {
    cached_attention(pool, s, *cache, layer, q, k, v, W, B, T, sc.att.data());
  } else {
    nn::AttentionDims dims{B, T, T, s.n_heads, s.n_kv_heads, hd};
    nn::attention(pool, dims, q, W, k, W, v, W, sc.att.data(), qw, s.causal, key_mask,
                  float(1.0 / std::sqrt(double(hd))), s.window(layer));
  }
  nn::linear(pool, sc.att.data(), R, qw, L.o_w.weight(), L.o_b.data(), d, out);
}

// Cross-attention sublayer (encoder–decoder decoders): out[R, d] = xo(attention(xq(x), xkv(encoder states))),
// not causal, encoder padding masked. With a cache the encoder keys/values are projected once.
void cross_attention(ThreadPool* pool, const ModelSpec& s, const LayerWeights& L, const float* x, float* out,
                     size_t B, size_t T, const ForwardInput& in, Scratch& sc, size_t layer) {
  const size_t R = B * T, d = s.d_model, hd = s.head_dim, S = in.encoder_seq;
  const size_t qw = s.n_heads * hd, kw = s.n_kv_heads * hd;
  nn::linear(pool, x, R, d, L.xq_w.weight(), L.xq_b.data(), qw, sc.qkv.data());
  const float *k, *v;
  size_t ld;
  KVCache* cache = in.cache;
  if (cache) {
    if (!cache->cross_ready) {
      std::vector<float> kv(B * S * 2 * kw);
      nn::linear(pool, in.encoder_hidden, B * S, d, L.xkv_w.weight(), L.xkv_b.data(), 2 * kw, kv.data());
      cache->xk[layer].resize(B * S * kw);
      cache->xv[layer].resize(B * S * kw);
      for (size_t r = 0; r < B * S; ++r) {
        std::copy(kv.data() + r * 2 * kw, kv.data() + r * 2 * kw + kw, cache->xk[layer].data() + r * kw);
        std::copy(kv.data() + r * 2 * kw + kw, kv.data() + (r + 1) * 2 * kw, cache->xv[layer].data() + r * kw);
      }
    }
    k = cache->xk[layer].data();
    v = cache->xv[layer].data();
    ld = kw;
  } else {
    sc.xkv.resize(B * S * 2 * kw);
    nn::linear(pool, in.encoder_hidden, B * S, d, L.xkv_w.weight(), L.xkv_b.data(), 2 * kw, sc.xkv.data());
    k = sc.xkv.data();
    v = k + kw;
    ld = 2 * kw;
  }
  nn::AttentionDims dims{B, T, S, s.n_heads, s.n_kv_heads, hd};
  nn::attention(pool, dims, sc.qkv.data(), qw, k, ld, v, ld, sc.att.data(), qw, false, in.encoder_mask,
                float(1.0 / std::sqrt(double(hd))));
  nn::linear(pool, sc.att.data(), R, qw, L.xo_w.weight(), L.xo_b.data(), d, out);
}

// FF sublayer: out[R, d] = w_out · act(…) ; sc.up holds the pre-activation x·w_inᵀ + b_in on return of
// the first product, which is when `on_preact` sees it.
template <typename OnPreact>
void feed_forward(ThreadPool* pool, const ModelSpec& s, const FFWeights& ff, const float* x, float* out, size_t R,
                  Scratch& sc, OnPreact&& on_preact) {
  const size_t d = s.d_model, f = s.d_ff;
  nn::linear(pool, x, R, d, ff.w_in.weight(), ff.b_in.data(), f, sc.up.data());
  on_preact(sc.up.data());
  if (s.gated_ff) {
    nn::linear(pool, x, R, d, ff.w_gate.weight(), ff.b_gate.data(), f, sc.gate.data());
    nn::gated_activate(pool, s.activation, sc.gate.data(), sc.up.data(), R * f);
  } else {
    nn::activate(pool, s.activation, sc.up.data(), R * f);
  }
  nn::linear(pool, sc.up.data(), R, f, ff.w_out.weight(), ff.b_out.data(), d, out);
}

// Marian's sinusoidal table row: sin(pos·ω_i) in the first half, cos(pos·ω_i) in the second, ω_i =
// 10000^(−2i/d); computed in double and rounded once, as transformers builds its table (numpy float64).
void sinusoidal_row(size_t pos, size_t d, float* out) {
  const size_t half = (d + 1) / 2;
  for (size_t j = 0; j < d; ++j) {
    const size_t i = j < half ? j : j - half;
    const double angle = double(pos) / std::pow(10000.0, double(2 * i) / double(d));
    out[j] = float(j < half ? std::sin(angle) : std::cos(angle));
  }
}

// Patch input (ViT): x[b, 0] = CLS token, x[b, 1 + p] = patch_w · patch_p + patch_b, the patch vector read
// in the conv weight's (channel, ky, kx) order, patches in row-major order over the image.
void embed_patches(ThreadPool* pool, const Model& m, const float* pixels, size_t B, float* x) {
  const ModelSpec& s = m.spec;
  const size_t d = s.d_model, P = s.patches(), pd = s.patch_dim(), p = s.patch, C = s.channels;
  const size_t H = s.image_h, Wd = s.image_w, gw = Wd / p, T = 1 + P;
  std::vector<float> cols(B * P * pd);
  pool->parallel_for(B * P, 16, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const size_t b = r / P, pi = r % P, py = pi / gw, px = pi % gw;
      float* c = cols.data() + r * pd;
      for (size_t ch = 0; ch < C; ++ch)
        for (size_t ky = 0; ky < p; ++ky) {
          const float* src = pixels + ((b * C + ch) * H + py * p + ky) * Wd + px * p;
          std::copy(src, src + p, c + (ch * p + ky) * p);
        }
    }
  });
  // Patch rows land at x[b, 1..P]: one linear per image, writing straight into place.
  for (size_t b = 0; b < B; ++b) {
    nn::linear(pool, cols.data() + b * P * pd, P, pd, m.w.patch_w.weight(), m.w.patch_b.data(), d, x + (b * T + 1) * d);
    std::copy(m.w.cls_token.data(), m.w.cls_token.data() + d, x + b * T * d);
  }
}

void embed(ThreadPool* pool, const Model& m, const ForwardInput& in, size_t B, size_t T, size_t pos0, float* x) {
  const ModelSpec& s = m.spec;
  const size_t d = s.d_model;
  const int32_t* ids = in.ids;
  const float* te = m.w.tok_emb.data();
  const float* pe = m.w.pos_emb.data();
  const float* ty = m.w.type_emb.data();
  if (s.input == InputKind::Patches) embed_patches(pool, m, in.pixels, B, x);
  auto body = [&](size_t r0, size_t r1) {
    std::vector<float> sin_row(s.positions == PositionKind::Sinusoidal ? d : 0);
    for (size_t r = r0; r < r1; ++r) {
      const size_t t = pos0 + r % T;
      float* xr = x + r * d;
      if (s.input == InputKind::Tokens) {
        if (te) {
          const float* e = te + size_t(ids[r]) * d;
          for (size_t i = 0; i < d; ++i) xr[i] = e[i] * s.embed_scale;
        } else {
          // a 16-bit table: the row is widened (exactly) into place, then scaled as above
          m.w.tok_emb.read_f32(size_t(ids[r]) * d, d, xr);
          for (size_t i = 0; i < d; ++i) xr[i] *= s.embed_scale;
        }
      }
      if (s.positions == PositionKind::Learned)
        for (size_t i = 0; i < d; ++i) xr[i] += pe[t * d + i];
      if (s.positions == PositionKind::Sinusoidal) {
        sinusoidal_row(t, d, sin_row.data());
        for (size_t i = 0; i < d; ++i) xr[i] += sin_row[i];
      }
      if (ty) {
        const float* e = ty + size_t(in.token_type_ids ? in.token_type_ids[r] : 0) * d;
        for (size_t i = 0; i < d; ++i) xr[i] += e[i];
      }
    }
  };
  pool->parallel_for(B * T, 64, body);
  if (s.embed_norm) norm(pool, s, x, x, B * T, m.w.embed_norm_w, m.w.embed_norm_b);
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
  const bool embeds = o.from_layer == 0 && !in.hidden;
  const bool need_ids = (embeds && s.input == InputKind::Tokens) || o.output == Output::Nll;
  if (need_ids && !in.ids) throw Error("INVALID_ARGUMENT", "forward: token ids are required");
  if (embeds && s.input == InputKind::Patches) {
    if (!in.pixels) throw Error("INVALID_ARGUMENT", "forward: this model takes images (pixel values), none given");
    if (in.seq != 1 + s.patches())
      throw Error("SHAPE_MISMATCH", "forward: images of " + std::to_string(s.image_h) + "x" + std::to_string(s.image_w) +
                                        " give " + std::to_string(1 + s.patches()) + " positions, not " +
                                        std::to_string(in.seq));
  }
  if (o.output == Output::Nll && s.head != HeadKind::LMHead)
    throw Error("INVALID_ARGUMENT", "forward: NLL needs a language-model head; this model has none");
  if (o.output == Output::Logits && s.head == HeadKind::None)
    throw Error("INVALID_ARGUMENT", "forward: this model has no output head; ask for hidden states");
  const size_t past = in.cache ? in.cache->length : 0;
  if ((s.positions == PositionKind::Learned || s.positions == PositionKind::Sinusoidal) && s.max_positions &&
      past + in.seq > s.max_positions)
    throw Error("SEQUENCE_TOO_LONG", "sequence length " + std::to_string(past + in.seq) +
                                         " is longer than the model's " + std::to_string(s.max_positions) +
                                         " positions (max_positions)");
  if (s.cross_attention && to > o.from_layer) {
    if (!in.encoder_hidden || in.encoder_seq == 0)
      throw Error("INVALID_ARGUMENT", "forward: a decoder with cross-attention needs the encoder states");
  }
  if (in.cache) {
    if (in.cache->batch != in.batch || in.cache->k.size() != s.layers || o.from_layer != 0 || in.hidden)
      throw Error("INVALID_ARGUMENT", "forward: the KV cache does not match this batch/model, or the pass does "
                                      "not start at layer 0");
  }
  if (in.token_type_ids && s.type_vocab) {
    for (size_t r = 0; r < in.batch * in.seq; ++r)
      if (in.token_type_ids[r] < 0 || size_t(in.token_type_ids[r]) >= s.type_vocab)
        throw Error("INVALID_ARGUMENT", "token type id " + std::to_string(in.token_type_ids[r]) +
                                            " is outside the model's " + std::to_string(s.type_vocab) + " types");
  }
  if (in.ids) {
    for (size_t r = 0; r < in.batch * in.seq; ++r)
      if (in.ids[r] < 0 || size_t(in.ids[r]) >= s.vocab)
        throw Error("INVALID_ARGUMENT", "token id " + std::to_string(in.ids[r]) + " at position " +
                                            std::to_string(r % in.seq) + " of sequence " + std::to_string(r / in.seq) +
                                            " is outside the vocabulary (size " + std::to_string(s.vocab) + ")");
  }
  for (const auto* list : {&o.capture_layers, &o.input_layers, &o.output_layers})
    for (size_t l : *list)
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
    nn::linear(pool, h + r0 * d, n, d, m.w.lm_head_w.weight(), m.w.lm_head_b.data(), V, logits.data());
    pool->parallel_for(n, 8, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        const size_t r = r0 + i, b = r / T, t = r % T;
        if (t + 1 >= T || (mask && !mask[b * T + t + 1])) continue;
        const float* lr = logits.data() + i * V;
        float mx = -std::numeric_limits<float>::infinity();
        for (size_t j = 0; j < V; ++j) mx = std::max(mx, lr[j]);
        double sum = 0;
        for (size_t j = 0; j < V; ++j) sum += double(std::exp(lr[j] - mx));
        // the difference first: log(sum) (at most log V) is lost to rounding beside logits of 1e31
        row_nll[i] = (double(mx) - double(lr[ids[r + 1]])) + std::log(sum);
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
  // an abort stops the matrix products inside a layer, not only at the next one (seconds apart at 7B width)
  const CancelScope cancel_scope(ctl);
  const ModelSpec& s = m.spec;
  const size_t to = std::min(o.to_layer, s.layers);
  check_inputs(m, in, o, to);
  ThreadPool* pool = &ctl.pool();
  const size_t B = in.batch, T = in.seq, R = B * T, d = s.d_model;
  const uint8_t* fmask = o.feature_mask ? o.feature_mask : in.attention_mask;

  const size_t pos0 = in.cache ? in.cache->length : 0;
  std::vector<int32_t> positions(R);
  for (size_t r = 0; r < R; ++r) positions[r] = int32_t(pos0 + r % T);

  std::vector<float> x(R * d);
  if (in.hidden) std::copy(in.hidden, in.hidden + R * d, x.begin());
  else embed(pool, m, in, B, T, pos0, x.data());

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
  // (sized one by one: a fill constructor would build its zeroed prototype even for an empty list)
  std::vector<std::vector<float>> captured(o.capture_layers.size()), inputs(o.input_layers.size()), outputs(o.output_layers.size());
  for (auto& c : captured) c.resize(feature_rows * s.d_ff);
  for (auto& c : inputs) c.resize(feature_rows * d);
  for (auto& c : outputs) c.resize(feature_rows * d);
  // the feature rows of `src` [R, width] into the buffer of each entry of `layers` that is layer l
  auto copy_features = [&](const std::vector<size_t>& layers, std::vector<std::vector<float>>& bufs, size_t l,
                           const float* src, size_t width) {
    for (size_t ci = 0; ci < layers.size(); ++ci) {
      if (layers[ci] != l) continue;
      float* dst = bufs[ci].data();
      for (size_t r = 0; r < R; ++r) {
        if (fmask && !fmask[r]) continue;
        std::copy(src + r * width, src + (r + 1) * width, dst);
        dst += width;
      }
    }
  };

  // Progress in multiply-adds per token, not in layers: the LM head (d·vocab) can be several layers' worth.
  // Attention's T² term and a classifier's few rows are left out: a share for the time left, not a cost model.
  const double layer_work = double(d) * double(s.qkv_width() + s.n_heads * s.head_dim) * (s.cross_attention ? 2.0 : 1.0) +
                            double(d) * double(s.d_ff) * (s.gated_ff ? 3.0 : 2.0);
  const bool lm_head = o.output != Output::Hidden && !(o.output == Output::Logits && s.head == HeadKind::Classifier);
  const double steps = layer_work * double(to - o.from_layer) + (lm_head ? double(d) * double(s.vocab) : 0.0);
  for (size_t l = o.from_layer; l < to; ++l) {
    ctl.check();
    // held for this layer's work only: a streamed layer is read here and freed after it (unless others hold it)
    const auto held = layer_weights(ctl, m, l);
    const LayerWeights& L = *held;
    auto capture = [&](const float* up) { copy_features(o.capture_layers, captured, l, up, s.d_ff); };
    if (s.placement == NormPlacement::Pre) {
      norm(pool, s, x.data(), sc.a.data(), R, L.norm1_w, L.norm1_b);
      self_attention(pool, s, L, sc.a.data(), sc.tmp.data(), B, T, positions, in.attention_mask, sc, in.cache, l);
      nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
      if (s.cross_attention) {
        norm(pool, s, x.data(), sc.a.data(), R, L.xnorm_w, L.xnorm_b);
        cross_attention(pool, s, L, sc.a.data(), sc.tmp.data(), B, T, in, sc, l);
        nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
      }
      norm(pool, s, x.data(), sc.a.data(), R, L.norm2_w, L.norm2_b);
      copy_features(o.input_layers, inputs, l, sc.a.data(), d);
      feed_forward(pool, s, *L.ff, sc.a.data(), sc.tmp.data(), R, sc, capture);
      copy_features(o.output_layers, outputs, l, sc.tmp.data(), d);
      nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
    } else {  // post-norm: x = norm(x + f(x))
      self_attention(pool, s, L, x.data(), sc.tmp.data(), B, T, positions, in.attention_mask, sc, in.cache, l);
      nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
      norm(pool, s, x.data(), x.data(), R, L.norm1_w, L.norm1_b);
      if (s.cross_attention) {
        cross_attention(pool, s, L, x.data(), sc.tmp.data(), B, T, in, sc, l);
        nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
        norm(pool, s, x.data(), x.data(), R, L.xnorm_w, L.xnorm_b);
      }
      copy_features(o.input_layers, inputs, l, x.data(), d);
      feed_forward(pool, s, *L.ff, x.data(), sc.tmp.data(), R, sc, capture);
      copy_features(o.output_layers, outputs, l, sc.tmp.data(), d);
      nn::add_inplace(pool, x.data(), sc.tmp.data(), R * d);
      norm(pool, s, x.data(), x.data(), R, L.norm2_w, L.norm2_b);
    }
    // checked per layer (R·d reads beside the layer's R·d·d_ff multiply-adds), so the error names the layer
    // where NaN or Inf first appears: a weight of that layer, in practice
    float poison = 0.0f;
    for (float v : x) poison += v - v;  // 0 for finite values, NaN once any is NaN or ±Inf
    if (poison != 0.0f)
      throw Error("NON_FINITE_ACTIVATIONS", "the hidden states became non-finite (NaN or Inf) in layer " +
                                                std::to_string(l) + (s.causal ? "" : " of the encoder") +
                                                ": that layer's weights hold non-finite values, or its activations "
                                                "overflow float32");
    ctl.progress(layer_work * double(l - o.from_layer + 1), steps);
  }
  if (in.cache && to == s.layers) {
    in.cache->length += T;
    if (s.cross_attention) in.cache->cross_ready = true;
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
  res.ff_inputs = std::move(inputs);
  res.ff_outputs = std::move(outputs);
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
  if (o.output == Output::Logits && s.head == HeadKind::Classifier) {
    // Classifier on the first position of each sequence (CLS), after BERT's tanh pooler when present.
    std::vector<float> cls(B * d), pooled;
    for (size_t b = 0; b < B; ++b) std::copy(h + b * T * d, h + b * T * d + d, cls.data() + b * d);
    const float* feat = cls.data();
    if (s.pooler) {
      pooled.resize(B * d);
      nn::linear(pool, cls.data(), B, d, m.w.pooler_w.weight(), m.w.pooler_b.data(), d, pooled.data());
      for (float& v : pooled) v = std::tanh(v);
      feat = pooled.data();
    }
    res.logits.resize(B * s.num_labels);
    nn::linear(pool, feat, B, d, m.w.classifier_w.weight(), m.w.classifier_b.data(), s.num_labels, res.logits.data());
  } else if (o.output == Output::Logits) {
    res.logits.resize(R * s.vocab);
    nn::linear(pool, h, R, d, m.w.lm_head_w.weight(), m.w.lm_head_b.data(), s.vocab, res.logits.data());
  } else {
    if (T < 2) throw Error("INVALID_ARGUMENT", "forward: NLL needs sequences of at least 2 tokens");
    next_token_nll(pool, m, h, in.ids, in.attention_mask, B, T, res);
  }
  ctl.progress(steps, steps);
  return res;
}

}  // namespace ffm::model
