#include "core/model/generate.h"

#include <algorithm>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/model/forward.h"

namespace ffm::model {

GreedyResult greedy_generate(JobControl& ctl, const Model& encoder, const Model& decoder, const int32_t* src,
                             const uint8_t* src_mask, size_t B, size_t S, const GreedyOptions& opt) {
  const ModelSpec& ds = decoder.spec;
  if (!ds.cross_attention || ds.head != HeadKind::LMHead)
    throw Error("INVALID_ARGUMENT", "greedy decoding needs a decoder with cross-attention and an LM head");
  if (encoder.spec.d_model != ds.d_model)
    throw Error("INVALID_CONFIG", "encoder and decoder widths differ (" + std::to_string(encoder.spec.d_model) +
                                      " vs " + std::to_string(ds.d_model) + ")");
  if (opt.max_length < 2) throw Error("INVALID_ARGUMENT", "greedy decoding: max_length must be at least 2");
  const auto in_vocab = [&](int32_t t) { return t >= 0 && size_t(t) < ds.vocab; };
  if (!in_vocab(opt.decoder_start) || !in_vocab(opt.pad) || (opt.eos >= 0 && !in_vocab(opt.eos)) ||
      (opt.forced_eos >= 0 && !in_vocab(opt.forced_eos)))
    throw Error("INVALID_CONFIG", "generation config: a special token id is outside the vocabulary");

  // 1. Encoder, once.
  ForwardInput ein;
  ein.ids = src;
  ein.batch = B;
  ein.seq = S;
  ein.attention_mask = src_mask;
  ForwardOptions eo;
  eo.output = Output::Hidden;
  ForwardResult enc = forward(ctl, encoder, ein, eo);
  if (encoder.spec.final_norm) throw Error("INVALID_CONFIG", "greedy decoding: encoder final norm is not supported");

  // 2. Decoder, one position per step.
  const size_t L = opt.max_length, V = ds.vocab;
  KVCache cache(ds.layers, B, L, ds.n_kv_heads * ds.head_dim);
  std::vector<std::vector<int32_t>> seqs(B, std::vector<int32_t>{opt.decoder_start});
  std::vector<uint8_t> done(B, 0);
  std::vector<int32_t> step_ids(B, opt.decoder_start);
  ForwardOptions dop;
  dop.output = Output::Logits;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  while (seqs[0].size() < L) {
    ctl.check();
    ForwardInput din;
    din.ids = step_ids.data();
    din.batch = B;
    din.seq = 1;
    din.encoder_hidden = enc.hidden.data();
    din.encoder_seq = S;
    din.encoder_mask = src_mask;
    din.cache = &cache;
    ForwardResult r = forward(ctl, decoder, din, dop);
    const size_t cur_len = seqs[0].size();
    bool all_done = true;
    for (size_t b = 0; b < B; ++b) {
      float* lg = r.logits.data() + b * V;
      const auto& sq = seqs[b];
      for (const auto& bw : opt.bad_words) {
        if (bw.empty() || !in_vocab(bw.back())) continue;
        const size_t pre = bw.size() - 1;
        if (pre > sq.size() || !std::equal(bw.begin(), bw.end() - 1, sq.end() - pre)) continue;
        lg[bw.back()] = neg_inf;
      }
      if (opt.forced_eos >= 0 && cur_len == L - 1) {
        for (size_t j = 0; j < V; ++j)
          if (int32_t(j) != opt.forced_eos) lg[j] = neg_inf;
      }
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

}  // namespace ffm::model
