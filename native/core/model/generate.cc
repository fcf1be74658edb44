#include "core/model/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "core/error.h"
#include "core/model/forward.h"

namespace ffm::model {

namespace {

// Bans the last token of every bad word whose prefix ends `sq`; forces eos at the last position (its score 0,
// as transformers' ForcedEOSTokenLogitsProcessor sets it). Greedy applies it to logits, beam search to
// log-probabilities, as transformers does.
template <typename T>
void process_logits(T* lg, size_t V, const std::vector<int32_t>& sq, size_t cur_len, const GreedyOptions& opt) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  for (const auto& bw : opt.bad_words) {
    if (bw.empty() || bw.back() < 0 || size_t(bw.back()) >= V) continue;
    const size_t pre = bw.size() - 1;
    if (pre > sq.size() || !std::equal(bw.begin(), bw.end() - 1, sq.end() - pre)) continue;
    lg[bw.back()] = neg_inf;
  }
  if (opt.forced_eos >= 0 && cur_len == opt.max_length - 1) {
    for (size_t j = 0; j < V; ++j)
      if (int32_t(j) != opt.forced_eos) lg[j] = neg_inf;
    lg[opt.forced_eos] = 0;
  }
}

// log-softmax in place, in double: the max kept apart from the log of the sum (lost to rounding beside
// logits of 1e31). Entries of -inf stay -inf.
void log_softmax(double* v, size_t V) {
  const double mx = *std::max_element(v, v + V);
  double sum = 0;
  for (size_t j = 0; j < V; ++j) sum += std::exp(v[j] - mx);
  const double log_sum = std::log(sum);
  for (size_t j = 0; j < V; ++j) v[j] = (v[j] - mx) - log_sum;
}

// Every id the search writes at or compares with, eos and forced eos too (else an out-of-bounds write).
void check_special_ids(const GreedyOptions& opt, size_t V) {
  const auto in_vocab = [&](int32_t t) { return t >= 0 && size_t(t) < V; };
  if (!in_vocab(opt.decoder_start) || !in_vocab(opt.pad) || (opt.eos >= 0 && !in_vocab(opt.eos)) ||
      (opt.forced_eos >= 0 && !in_vocab(opt.forced_eos)))
    throw Error("INVALID_CONFIG", "generation config: a special token id is outside the vocabulary");
}

ForwardResult encode(JobControl& passes, const Model& encoder, const int32_t* src, const uint8_t* src_mask, size_t B,
                     size_t S) {
  ForwardInput ein;
  ein.ids = src;
  ein.batch = B;
  ein.seq = S;
  ein.attention_mask = src_mask;
  ForwardOptions eo;
  eo.output = Output::Hidden;
  return forward(passes, encoder, ein, eo);
}

// One position of every row's sequence (ids: the last token of each) through the decoder, on its KV cache.
ForwardResult decode_step(JobControl& passes, const Model& decoder, const std::vector<int32_t>& ids, const float* enc,
                          size_t S, const uint8_t* enc_mask, KVCache& cache) {
  ForwardInput din;
  din.ids = ids.data();
  din.batch = ids.size();
  din.seq = 1;
  din.encoder_hidden = enc;
  din.encoder_seq = S;
  din.encoder_mask = enc_mask;
  din.cache = &cache;
  return forward(passes, decoder, din, ForwardOptions{});  // logits
}

}  // namespace

GreedyResult greedy_generate(JobControl& ctl, const Model& encoder, const Model& decoder, const int32_t* src,
                             const uint8_t* src_mask, size_t B, size_t S, const GreedyOptions& opt) {
  if (opt.num_beams > 1) return beam_generate(ctl, encoder, decoder, src, src_mask, B, S, opt);
  // the passes' own per-layer progress would overwrite the decoding steps this reports: they share the
  // cancel flag, not the progress sink
  JobControl passes = ctl.nested();
  const ModelSpec& ds = decoder.spec;
  if (!ds.cross_attention || ds.head != HeadKind::LMHead)
    throw Error("INVALID_ARGUMENT", "greedy decoding needs a decoder with cross-attention and an LM head");
  if (encoder.spec.d_model != ds.d_model)
    throw Error("INVALID_CONFIG", "encoder and decoder widths differ (" + std::to_string(encoder.spec.d_model) +
                                      " vs " + std::to_string(ds.d_model) + ")");
  if (opt.max_length < 2) throw Error("INVALID_ARGUMENT", "greedy decoding: max_length must be at least 2");
  check_special_ids(opt, ds.vocab);

  // 1. Encoder, once.
  ForwardResult enc = encode(passes, encoder, src, src_mask, B, S);
  if (encoder.spec.final_norm) throw Error("INVALID_CONFIG", "greedy decoding: encoder final norm is not supported");

  // 2. Decoder, one position per step.
  const size_t L = opt.max_length, V = ds.vocab;
  KVCache cache(ds.layers, B, L, ds.n_kv_heads * ds.head_dim);
  std::vector<std::vector<int32_t>> seqs(B, std::vector<int32_t>{opt.decoder_start});
  std::vector<uint8_t> done(B, 0);
  std::vector<int32_t> step_ids(B, opt.decoder_start);
  while (seqs[0].size() < L) {
    ctl.check();
    ForwardResult r = decode_step(passes, decoder, step_ids, enc.hidden.data(), S, src_mask, cache);
    const size_t cur_len = seqs[0].size();
    bool all_done = true;
    for (size_t b = 0; b < B; ++b) {
      float* lg = r.logits.data() + b * V;
      process_logits(lg, V, seqs[b], cur_len, opt);
      int32_t next = int32_t(std::max_element(lg, lg + V) - lg);
      if (done[b]) next = opt.pad;
      seqs[b].push_back(next);
      step_ids[b] = next;
      if (opt.eos >= 0 && next == opt.eos) done[b] = 1;
      all_done = all_done && done[b];
    }
    ctl.progress(double(cur_len), double(L - 1));
    if (all_done) break;
  }
  GreedyResult out;
  out.length = seqs[0].size();
  out.ids.reserve(B * out.length);
  for (auto& sq : seqs) out.ids.insert(out.ids.end(), sq.begin(), sq.end());
  return out;
}

GreedyResult beam_generate(JobControl& ctl, const Model& encoder, const Model& decoder, const int32_t* src,
                           const uint8_t* src_mask, size_t B, size_t S, const GreedyOptions& opt) {
  const ModelSpec& ds = decoder.spec;
  const size_t K = opt.num_beams, L = opt.max_length, V = ds.vocab, d = ds.d_model;
  if (K == 0) throw Error("INVALID_ARGUMENT", "beam search: num_beams must be positive");
  if (!ds.cross_attention || ds.head != HeadKind::LMHead)
    throw Error("INVALID_ARGUMENT", "beam search needs a decoder with cross-attention and an LM head");
  if (L < 2) throw Error("INVALID_ARGUMENT", "beam search: max_length must be at least 2");
  check_special_ids(opt, V);
  JobControl passes = ctl.nested();  // (greedy_generate says why)
  ForwardResult enc = encode(passes, encoder, src, src_mask, B, S);
  // Every beam of sentence b reads encoder states b: expand to B·K rows.
  std::vector<float> ench(B * K * S * d);
  std::vector<uint8_t> encm(src_mask ? B * K * S : 0);
  for (size_t b = 0; b < B; ++b)
    for (size_t k = 0; k < K; ++k) {
      std::copy(enc.hidden.begin() + b * S * d, enc.hidden.begin() + (b + 1) * S * d, ench.begin() + (b * K + k) * S * d);
      if (src_mask) std::copy(src_mask + b * S, src_mask + (b + 1) * S, encm.begin() + (b * K + k) * S);
    }

  const size_t R = B * K, kvw = ds.n_kv_heads * ds.head_dim;
  KVCache cache(ds.layers, R, L, kvw);
  std::vector<std::vector<int32_t>> beams(R, std::vector<int32_t>{opt.decoder_start});
  // Only beam 0 of each sentence is live at the start (the others would duplicate it).
  std::vector<double> score(R, 0.0);
  for (size_t r = 0; r < R; ++r)
    if (r % K) score[r] = -1e9;
  struct Hyp {
    double score;
    std::vector<int32_t> ids;
  };
  std::vector<std::vector<Hyp>> finished(B);
  std::vector<uint8_t> done(B, 0);
  auto norm = [&](double s, size_t gen_len) { return s / std::pow(double(gen_len), double(opt.length_penalty)); };
  auto add_hyp = [&](size_t b, double s, std::vector<int32_t> ids) {
    auto& f = finished[b];
    f.push_back({s, std::move(ids)});
    std::sort(f.begin(), f.end(), [](const Hyp& x, const Hyp& y) { return x.score > y.score; });
    if (f.size() > K) f.pop_back();
  };
  std::vector<double> lp(V);  // one row's scores
  std::vector<int32_t> step_ids(R, opt.decoder_start);
  for (size_t cur_len = 1; cur_len < L; ++cur_len) {
    ctl.check();
    ForwardResult res = decode_step(passes, decoder, step_ids, ench.data(), S, src_mask ? encm.data() : nullptr, cache);
    std::vector<size_t> src_row(R);
    std::vector<int32_t> next_tok(R, opt.pad);
    std::vector<double> next_score(R, -1e9);
    for (size_t b = 0; b < B; ++b) {
      if (done[b]) {
        for (size_t k = 0; k < K; ++k) src_row[b * K + k] = b * K + k;
        continue;
      }
      // candidates (score, beam, token), best 2K over K × V
      std::vector<std::pair<double, size_t>> cand;
      cand.reserve(K * V);
      for (size_t k = 0; k < K; ++k) {
        const size_t r = b * K + k;
        const float* lg = res.logits.data() + r * V;
        // transformers' beam search: the log-softmax of the raw logits, then the processors (a banned token's
        // probability is not spread over the others unless renormalize_logits asks for it)
        std::copy(lg, lg + V, lp.begin());
        log_softmax(lp.data(), V);
        process_logits(lp.data(), V, beams[r], cur_len, opt);
        if (opt.renormalize) log_softmax(lp.data(), V);
        for (size_t j = 0; j < V; ++j)
          if (std::isfinite(lp[j])) cand.emplace_back(score[r] + lp[j], k * V + j);
      }
      const size_t top = std::min(cand.size(), 2 * K);
      std::partial_sort(cand.begin(), cand.begin() + top, cand.end(),
                        [](const auto& x, const auto& y) { return x.first > y.first || (x.first == y.first && x.second < y.second); });
      size_t kept = 0;
      for (size_t c = 0; c < top && kept < K; ++c) {
        const size_t k = cand[c].second / V;
        const int32_t tok = int32_t(cand[c].second % V);
        const size_t r = b * K + k;
        if (opt.eos >= 0 && tok == opt.eos) {
          if (c >= K) continue;  // an eos outside the top K does not finish a hypothesis
          std::vector<int32_t> ids = beams[r];
          ids.push_back(tok);
          const double hyp_score = norm(cand[c].first, ids.size() - 1);  // before ids is moved from
          add_hyp(b, hyp_score, std::move(ids));
          continue;
        }
        src_row[b * K + kept] = r;
        next_tok[b * K + kept] = tok;
        next_score[b * K + kept] = cand[c].first;
        ++kept;
      }
      for (; kept < K; ++kept) src_row[b * K + kept] = b * K;  // fewer live candidates than beams (tiny vocab)
      // done: K finished and (early_stopping) at once, or no running beam can still beat the worst of them
      const double best_running = next_score[b * K];
      if (finished[b].size() == K && (opt.early_stopping || finished[b].back().score >= norm(best_running, cur_len))) done[b] = 1;
    }
    // reselect beams: token histories and KV cache rows
    std::vector<std::vector<int32_t>> nb(R);
    for (size_t r = 0; r < R; ++r) {
      nb[r] = beams[src_row[r]];
      nb[r].push_back(next_tok[r]);
    }
    beams.swap(nb);
    score = next_score;
    for (size_t l = 0; l < ds.layers; ++l) {
      for (auto* buf : {&cache.k[l], &cache.v[l]}) {
        std::vector<float> old(*buf);
        for (size_t r = 0; r < R; ++r)
          if (src_row[r] != r)
            std::copy(old.begin() + src_row[r] * L * kvw, old.begin() + (src_row[r] * L + cache.length) * kvw,
                      buf->begin() + r * L * kvw);
      }
    }
    step_ids = next_tok;
    ctl.progress(double(cur_len), double(L - 1));
    if (std::all_of(done.begin(), done.end(), [](uint8_t v) { return v != 0; })) break;
  }
  // sentences still running at max_length: their live beams are hypotheses too
  for (size_t b = 0; b < B; ++b) {
    if (done[b]) continue;
    for (size_t k = 0; k < K; ++k) {
      const size_t r = b * K + k;
      if (score[r] <= -1e8) continue;
      add_hyp(b, norm(score[r], beams[r].size() - 1), beams[r]);
    }
  }
  GreedyResult out;
  out.length = 1;
  for (auto& f : finished) out.length = std::max(out.length, f.empty() ? size_t(1) : f.front().ids.size());
  out.ids.assign(B * out.length, opt.pad);
  for (size_t b = 0; b < B; ++b) {
    if (finished[b].empty()) {
      out.ids[b * out.length] = opt.decoder_start;
      continue;
    }
    const auto& ids = finished[b].front().ids;
    std::copy(ids.begin(), ids.end(), out.ids.begin() + b * out.length);
  }
  return out;
}

}  // namespace ffm::model
