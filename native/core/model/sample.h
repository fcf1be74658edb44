// Ancestral sampling from a decoder-only language model on a KV cache: sequences that start with one token, each
// next token drawn from softmax(logits / temperature). Calibration data in the model's own distribution
// (compress's `calibration: { sample }`); each step runs only the new position, so a row of L tokens costs
// L positions, not the L²/2 of rerunning every prefix (test/reference/sample.ts, the oracle, does that).
#pragma once
#include <cstdint>
#include <vector>

#include "core/job.h"
#include "core/model/weights.h"

namespace ffm::model {

struct SampleOptions {
  size_t rows = 0;
  size_t length = 0;   // tokens per row, the start token included (≥ 2)
  int32_t start = 0;   // first token of every row
  double temperature = 1.0;
  uint32_t seed = 1;
  // Rows sampled together (one KV cache); the draws go row by row within a step, step by step within a group,
  // group after group, so the same group size gives the oracle's exact sequence of random numbers.
  size_t group = 1;
};

// rows × length token ids, row-major. Draws use mulberry32(seed), as the oracle does.
std::vector<int32_t> sample_rows(JobControl& ctl, const Model& m, const SampleOptions& o);

}  // namespace ffm::model
