// Greedy and beam decoding for encoder–decoder models (Marian), following a Hugging Face generation_config.json:
// start from decoder_start_token_id, run the decoder one position at a time on a KV cache, ban bad_words_ids,
// force eos at max_length − 1 when forced_eos_token_id is set, pad finished sequences, stop when all have
// produced eos or max_length tokens exist (the start token counts, as in transformers).
#pragma once
#include <cstdint>
#include <vector>

#include "core/job.h"
#include "core/model/weights.h"

namespace ffm::model {

struct GreedyOptions {
  // Beam search when > 1 (see beam_generate); 1 = greedy.
  size_t num_beams = 1;
  // Finished hypotheses are ranked by sum of log-probs / (generated length ^ length_penalty).
  float length_penalty = 1.0f;
  int32_t decoder_start = 0;
  int32_t eos = -1;  // -1: none
  int32_t pad = 0;
  int32_t forced_eos = -1;  // -1: none
  size_t max_length = 64;   // including the start token
  std::vector<std::vector<int32_t>> bad_words;  // each: banned when its prefix ends the sequence so far
  // Beam search only (transformers' renormalize_logits, early_stopping true): log-softmax again after the
  // bans; a sentence ends as soon as it has num_beams finished hypotheses.
  bool renormalize = false;
  bool early_stopping = false;
};

struct GreedyResult {
  std::vector<int32_t> ids;  // [batch, length], starting with decoder_start, pad after eos
  size_t length = 0;
};

// src: [batch, src_seq] token ids, src_mask [batch, src_seq] (1 = real, nullptr = all real).
GreedyResult greedy_generate(JobControl& ctl, const Model& encoder, const Model& decoder, const int32_t* src,
                             const uint8_t* src_mask, size_t batch, size_t src_seq, const GreedyOptions& opt);

// Beam search with num_beams beams per sentence, after transformers' BeamSearchScorer (early_stopping False
// or true): each step ranks beam score + log-softmax (then bad words banned, eos forced at max_length − 1
// with score 0, and with renormalize a log-softmax again) over all
// beams × vocabulary, keeps the 2·num_beams best candidates; an eos candidate among the first num_beams
// becomes a finished hypothesis scored sum_logprobs / generated_length^length_penalty (generated length =
// tokens after the start token, eos included), the others continue as the next beams. A sentence is done when
// it has num_beams finished hypotheses and none of its running beams could still beat the worst of them; at
// max_length the running beams are finished too. Returns the best hypothesis per sentence (pad after eos).
// The decoder runs on a KV cache of batch·num_beams rows, reordered as beams are reselected.
GreedyResult beam_generate(JobControl& ctl, const Model& encoder, const Model& decoder, const int32_t* src,
                           const uint8_t* src_mask, size_t batch, size_t src_seq, const GreedyOptions& opt);

}  // namespace ffm::model
