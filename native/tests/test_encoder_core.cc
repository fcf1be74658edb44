// The encoder / encoder–decoder additions to the model core, on random weights of odd sizes:
//  - patch embedding (ViT) against a direct float64 convolution,
//  - causal attention with fewer queries than keys (KV-cache decoding) against full causal attention,
//  - decoding on a KV cache (sinusoidal positions, post-norm, cross-attention) against the full forward,
//  - greedy generation against step-by-step argmax over full forwards.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/model/forward.h"
#include "core/model/generate.h"
#include "core/nn/ops.h"
#include "core/thread_pool.h"
#include "tests/check.h"

using namespace ffm;
using namespace ffm::model;

namespace {
ThreadPool& pool() {
  static ThreadPool p(3);
  return p;
}
Buffer randb(size_t n, unsigned seed, float scale = 0.3f, float offset = 0.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  auto v = std::make_shared<std::vector<float>>(n);
  for (auto& x : *v) x = offset + nd(g);
  return v;
}
double max_rel(const float* a, const float* b, size_t n) {
  double md = 0, mr = 0;
  for (size_t i = 0; i < n; ++i) {
    md = std::max(md, std::fabs(double(a[i]) - double(b[i])));
    mr = std::max(mr, std::fabs(double(b[i])));
  }
  return md / (mr > 0 ? mr : 1);
}
void add_layers(std::map<std::string, Buffer>& t, const ModelSpec& s, unsigned& seed) {
  const size_t d = s.d_model, qw = s.n_heads * s.head_dim, kw = s.n_kv_heads * s.head_dim;
  for (size_t l = 0; l < s.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    t[p + "norm1_w"] = randb(d, seed++, 0.1f, 1.0f);
    t[p + "norm1_b"] = randb(d, seed++);
    t[p + "qkv_w"] = randb(s.qkv_width() * d, seed++);
    t[p + "qkv_b"] = randb(s.qkv_width(), seed++);
    t[p + "o_w"] = randb(d * qw, seed++);
    t[p + "o_b"] = randb(d, seed++);
    t[p + "norm2_w"] = randb(d, seed++, 0.1f, 1.0f);
    t[p + "norm2_b"] = randb(d, seed++);
    t[p + "ff.w_in"] = randb(s.d_ff * d, seed++);
    t[p + "ff.b_in"] = randb(s.d_ff, seed++);
    t[p + "ff.w_out"] = randb(d * s.d_ff, seed++);
    t[p + "ff.b_out"] = randb(d, seed++);
    if (s.cross_attention) {
      t[p + "xnorm_w"] = randb(d, seed++, 0.1f, 1.0f);
      t[p + "xnorm_b"] = randb(d, seed++);
      t[p + "xq_w"] = randb(qw * d, seed++);
      t[p + "xq_b"] = randb(qw, seed++);
      t[p + "xkv_w"] = randb(2 * kw * d, seed++);
      t[p + "xkv_b"] = randb(2 * kw, seed++);
      t[p + "xo_w"] = randb(d * qw, seed++);
      t[p + "xo_b"] = randb(d, seed++);
    }
  }
}
ModelSpec marian_like(bool decoder) {
  ModelSpec s;
  s.family = "test";
  s.layers = 2;
  s.d_model = 20;
  s.n_heads = 4;
  s.n_kv_heads = 4;
  s.head_dim = 5;
  s.d_ff = 27;
  s.vocab = 31;
  s.max_positions = 40;
  s.placement = NormPlacement::Post;
  s.final_norm = false;
  s.positions = PositionKind::Sinusoidal;
  s.activation = nn::Activation::Silu;
  s.embed_scale = std::sqrt(20.0f);
  s.causal = decoder;
  s.cross_attention = decoder;
  s.head = decoder ? HeadKind::LMHead : HeadKind::None;
  return s;
}
}  // namespace

TEST(patch_embedding_matches_direct_convolution) {
  ModelSpec s;
  s.family = "vit-test";
  s.layers = 1;
  s.d_model = 13;
  s.n_heads = 1;
  s.n_kv_heads = 1;
  s.head_dim = 13;
  s.d_ff = 7;
  s.input = InputKind::Patches;
  s.channels = 3;
  s.image_h = 10;
  s.image_w = 15;
  s.patch = 5;
  s.max_positions = 1 + s.patches();
  s.head = HeadKind::Classifier;
  s.num_labels = 4;
  unsigned seed = 1;
  std::map<std::string, Buffer> t;
  t["patch_w"] = randb(s.d_model * s.patch_dim(), seed++);
  t["patch_b"] = randb(s.d_model, seed++);
  t["cls_token"] = randb(s.d_model, seed++);
  t["pos_emb"] = randb(s.max_positions * s.d_model, seed++);
  t["final_norm_w"] = randb(s.d_model, seed++, 0.1f, 1.0f);
  t["classifier_w"] = randb(s.num_labels * s.d_model, seed++);
  add_layers(t, s, seed);
  Model m = build_model(s, t);
  const size_t B = 2, T = 1 + s.patches(), d = s.d_model;
  auto px = randb(B * 3 * 10 * 15, 77, 1.0f);
  JobControl ctl(pool());
  ForwardInput in;
  in.batch = B;
  in.seq = T;
  in.pixels = px->data();
  ForwardOptions o;
  o.output = Output::Hidden;
  o.to_layer = 0;  // the embedding only
  auto r = forward(ctl, m, in, o);
  std::vector<float> want(B * T * d);
  const auto &W = *t["patch_w"], &pb = *t["patch_b"], &cls = *t["cls_token"], &pos = *t["pos_emb"];
  for (size_t b = 0; b < B; ++b)
    for (size_t tok = 0; tok < T; ++tok)
      for (size_t o2 = 0; o2 < d; ++o2) {
        double v = pos[tok * d + o2];
        if (tok == 0) {
          v += cls[o2];
        } else {
          const size_t pi = tok - 1, py = pi / 3, pxi = pi % 3;
          v += pb[o2];
          for (size_t c = 0; c < 3; ++c)
            for (size_t ky = 0; ky < 5; ++ky)
              for (size_t kx = 0; kx < 5; ++kx)
                v += double(W[((o2 * 3 + c) * 5 + ky) * 5 + kx]) * (*px)[((b * 3 + c) * 10 + py * 5 + ky) * 15 + pxi * 5 + kx];
        }
        want[(b * T + tok) * d + o2] = float(v);
      }
  CHECK(max_rel(r.hidden.data(), want.data(), want.size()) < 1e-5);
  // and the classifier output has one row per image
  ForwardOptions lo;
  auto lr = forward(ctl, m, in, lo);
  CHECK(lr.logits.size() == B * s.num_labels);
}

TEST(causal_attention_with_offset_equals_last_rows_of_full) {
  const size_t sk = 9, sq = 3, nh = 2, hd = 4, w = nh * hd;
  auto q = randb(sk * w, 5), k = randb(sk * w, 6), v = randb(sk * w, 7);
  std::vector<float> full(sk * w), part(sq * w);
  nn::AttentionDims dfull{1, sk, sk, nh, nh, hd};
  nn::attention(&pool(), dfull, q->data(), w, k->data(), w, v->data(), w, full.data(), w, true, nullptr, 0.5f);
  nn::AttentionDims dpart{1, sq, sk, nh, nh, hd};
  nn::attention(&pool(), dpart, q->data() + (sk - sq) * w, w, k->data(), w, v->data(), w, part.data(), w, true, nullptr,
                0.5f);
  CHECK(max_rel(part.data(), full.data() + (sk - sq) * w, sq * w) < 1e-6);
}

TEST(kv_cache_decoding_equals_full_forward) {
  unsigned seed = 100;
  ModelSpec es = marian_like(false), ds = marian_like(true);
  std::map<std::string, Buffer> et, dt;
  auto emb = randb(es.vocab * es.d_model, seed++);
  et["tok_emb"] = emb;
  dt["tok_emb"] = emb;
  dt["lm_head_b"] = randb(ds.vocab, seed++);
  add_layers(et, es, seed);
  add_layers(dt, ds, seed);
  Model enc = build_model(es, et), dec = build_model(ds, dt);
  JobControl ctl(pool());
  const size_t B = 2, S = 7, T = 6;
  std::vector<int32_t> src = {3, 9, 4, 22, 1, 0, 0, 5, 6, 7, 8, 30, 2, 11};
  std::vector<uint8_t> smask = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1};
  std::vector<int32_t> tgt = {2, 4, 8, 15, 16, 23, 2, 1, 1, 2, 3, 5};
  ForwardInput ein;
  ein.ids = src.data();
  ein.batch = B;
  ein.seq = S;
  ein.attention_mask = smask.data();
  ForwardOptions eo;
  eo.output = Output::Hidden;
  auto eh = forward(ctl, enc, ein, eo);
  ForwardInput din;
  din.ids = tgt.data();
  din.batch = B;
  din.seq = T;
  din.encoder_hidden = eh.hidden.data();
  din.encoder_seq = S;
  din.encoder_mask = smask.data();
  auto full = forward(ctl, dec, din, ForwardOptions{});
  KVCache cache(ds.layers, B, T, ds.n_kv_heads * ds.head_dim);
  double worst = 0;
  for (size_t t = 0; t < T; ++t) {
    std::vector<int32_t> step = {tgt[t], tgt[T + t]};
    ForwardInput sin = din;
    sin.ids = step.data();
    sin.seq = 1;
    sin.cache = &cache;
    auto r = forward(ctl, dec, sin, ForwardOptions{});
    for (size_t b = 0; b < B; ++b)
      worst = std::max(worst, max_rel(r.logits.data() + b * ds.vocab, full.logits.data() + (b * T + t) * ds.vocab, ds.vocab));
  }
  CHECK(worst < 1e-5);
  CHECK(cache.length == T);
  // past the capacity: a typed error
  std::vector<int32_t> step = {1, 1};
  ForwardInput over = din;
  over.ids = step.data();
  over.seq = 1;
  over.cache = &cache;
  bool threw = false;
  try {
    forward(ctl, dec, over, ForwardOptions{});
  } catch (const Error& e) {
    threw = e.code() == "SEQUENCE_TOO_LONG";
  }
  CHECK(threw);

  // greedy generation = argmax of full forwards, step by step (with token 2 banned, eos 0, forced at the end)
  GreedyOptions g;
  g.decoder_start = 2;
  g.eos = 0;
  g.pad = 2;
  g.forced_eos = 0;
  g.max_length = 8;
  g.bad_words = {{2}};
  auto gen = greedy_generate(ctl, enc, dec, src.data(), smask.data(), B, S, g);
  CHECK(gen.length >= 2 && gen.length <= 8);
  for (size_t b = 0; b < B; ++b) {
    std::vector<int32_t> seq = {2};
    bool finished = false;
    for (size_t len = 1; len < gen.length; ++len) {
      int32_t next;
      if (finished) {
        next = 2;
      } else {
        std::vector<int32_t> ids(seq);
        ForwardInput fi;
        fi.ids = ids.data();
        fi.batch = 1;
        fi.seq = ids.size();
        fi.encoder_hidden = eh.hidden.data() + b * S * es.d_model;
        fi.encoder_seq = S;
        fi.encoder_mask = smask.data() + b * S;
        auto r = forward(ctl, dec, fi, ForwardOptions{});
        std::vector<float> last(r.logits.end() - ds.vocab, r.logits.end());
        last[2] = -INFINITY;
        if (len == g.max_length - 1)
          for (size_t j = 1; j < ds.vocab; ++j) last[j] = -INFINITY;
        next = int32_t(std::max_element(last.begin(), last.end()) - last.begin());
      }
      seq.push_back(next);
      if (next == 0) finished = true;
    }
    CHECK(std::equal(seq.begin(), seq.end(), gen.ids.begin() + b * gen.length));
  }
}

TEST(beam_search_with_enough_beams_finds_the_best_normalised_hypothesis) {
  // Tiny vocabulary and length: with more beams than prefixes the search is exhaustive, so it must return the
  // hypothesis with the best length-normalised log-probability, found here by enumerating every output.
  unsigned seed = 300;
  ModelSpec es = marian_like(false), ds = marian_like(true);
  es.vocab = ds.vocab = 5;
  std::map<std::string, Buffer> et, dt;
  auto emb = randb(5 * es.d_model, seed++, 1.0f);
  et["tok_emb"] = emb;
  dt["tok_emb"] = emb;
  {
    // the banned pad token likely (and how likely varying by step) is what the two scorings below disagree on
    auto b = std::make_shared<std::vector<float>>(*randb(5, seed++, 1.0f));
    (*b)[2] = 2.0f;
    dt["lm_head_b"] = b;
  }
  add_layers(et, es, seed);
  add_layers(dt, ds, seed);
  Model enc = build_model(es, et), dec = build_model(ds, dt);
  JobControl ctl(pool());
  const size_t S = 4;
  std::vector<int32_t> src = {1, 3, 4, 1};
  GreedyOptions g;
  g.decoder_start = 2;
  g.eos = 0;
  g.pad = 2;
  g.forced_eos = 0;
  g.max_length = 5;
  g.bad_words = {{2}};
  // below 1, a longer output's per-step ban costs count against it more: the scorings then differ
  g.length_penalty = 0.8f;
  ForwardInput ein;
  ein.ids = src.data();
  ein.batch = 1;
  ein.seq = S;
  ForwardOptions eo;
  eo.output = Output::Hidden;
  auto eh = forward(ctl, enc, ein, eo);
  // log-prob of a whole output (after the start token), as transformers' beam search scores it: the
  // log-softmax of the raw logits, then the bans (pad) and the forced eos at the last step (score 0); with
  // renormalize (renormalize_logits) a log-softmax again after them
  auto log_softmax = [](std::vector<double>& v) {
    double mx = *std::max_element(v.begin(), v.end()), sum = 0;
    for (double x : v) sum += std::exp(x - mx);
    for (double& x : v) x -= mx + std::log(sum);
  };
  auto seq_score = [&](const std::vector<int32_t>& out, bool renormalize) {
    double total = 0;
    std::vector<int32_t> prefix = {2};
    for (size_t i = 0; i < out.size(); ++i) {
      ForwardInput fi;
      fi.ids = prefix.data();
      fi.batch = 1;
      fi.seq = prefix.size();
      fi.encoder_hidden = eh.hidden.data();
      fi.encoder_seq = S;
      auto r = forward(ctl, dec, fi, ForwardOptions{});
      std::vector<double> lp(r.logits.end() - 5, r.logits.end());
      log_softmax(lp);
      lp[2] = -INFINITY;
      if (prefix.size() == g.max_length - 1) {
        for (size_t j = 1; j < 5; ++j) lp[j] = -INFINITY;
        lp[0] = 0;
      }
      if (renormalize) log_softmax(lp);
      total += lp[out[i]];
      prefix.push_back(out[i]);
    }
    return total / std::pow(double(out.size()), double(g.length_penalty));
  };
  const int32_t toks[] = {1, 3, 4};
  std::vector<std::vector<int32_t>> all = {{0}};
  for (int32_t a : toks) {
    all.push_back({a, 0});
    for (int32_t b2 : toks) {
      all.push_back({a, b2, 0});
      for (int32_t c : toks) all.push_back({a, b2, c, 0});
    }
  }
  g.num_beams = 40;
  // the two scorings must pick different outputs here, or the test could not tell them apart
  std::vector<int32_t> picked[2];
  for (bool renormalize : {false, true}) {
    double best = -INFINITY;
    std::vector<int32_t> best_seq;
    for (auto& o : all) {
      double sc = seq_score(o, renormalize);
      if (sc > best) best = sc, best_seq = o;
    }
    g.renormalize = renormalize;
    auto r = beam_generate(ctl, enc, dec, src.data(), nullptr, 1, S, g);
    std::vector<int32_t> got(r.ids.begin() + 1, r.ids.end());
    while (!got.empty() && got.back() == 2) got.pop_back();
    if (got != best_seq) {
      std::printf("    renormalize %d beam:", int(renormalize));
      for (int32_t t : got) std::printf(" %d", t);
      std::printf(" (%.6f)  exhaustive:", seq_score(got, renormalize));
      for (int32_t t : best_seq) std::printf(" %d", t);
      std::printf(" (%.6f)\n", best);
    }
    CHECK(got == best_seq);
    picked[renormalize] = best_seq;
  }
  CHECK(picked[0] != picked[1]);
  g.renormalize = false;
  // an eos or forced eos past the vocabulary is refused by the search too, never written at (tester EZ: a segfault)
  for (int which = 0; which < 2; ++which) {
    GreedyOptions bad = g;
    (which ? bad.forced_eos : bad.eos) = 100000000;
    std::string code;
    try {
      beam_generate(ctl, enc, dec, src.data(), nullptr, 1, S, bad);
    } catch (const Error& e) {
      code = e.code();
    }
    CHECK(code == "INVALID_CONFIG");
  }
  // one beam = greedy
  g.num_beams = 1;
  auto b1 = beam_generate(ctl, enc, dec, src.data(), nullptr, 1, S, g);
  auto gr = greedy_generate(ctl, enc, dec, src.data(), nullptr, 1, S, g);
  std::vector<int32_t> x(b1.ids.begin(), b1.ids.end()), y(gr.ids.begin(), gr.ids.end());
  while (!x.empty() && x.back() == 2 && x.size() > 1) x.pop_back();
  while (!y.empty() && y.back() == 2 && y.size() > 1) y.pop_back();
  CHECK(x == y);
}

TEST_MAIN()
