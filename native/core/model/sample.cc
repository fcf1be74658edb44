#include "core/model/sample.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/model/forward.h"

namespace ffm::model {

namespace {

// mulberry32, bit for bit as test/reference/sample.ts (Math.imul is a 32-bit product; >>> 0 an unsigned view).
class Mulberry32 {
 public:
  explicit Mulberry32(uint32_t seed) : a_(seed) {}
  double next() {
    a_ += 0x6d2b79f5u;
    uint32_t t = a_;
    t = (t ^ (t >> 15)) * (t | 1u);
    t ^= t + (t ^ (t >> 7)) * (t | 61u);
    return double(t ^ (t >> 14)) / 4294967296.0;
  }

 private:
  uint32_t a_;
};

// One token from softmax(logits / temperature) for the uniform u, the oracle's arithmetic in double.
int32_t draw(const float* logits, size_t V, double temperature, double u, std::vector<double>& p) {
  float mx = -INFINITY;
  for (size_t j = 0; j < V; ++j) mx = std::max(mx, logits[j]);
  double z = 0;
  for (size_t j = 0; j < V; ++j) z += p[j] = std::exp((double(logits[j]) - double(mx)) / temperature);
  double left = u * z;
  for (size_t j = 0; j + 1 < V; ++j)
    if ((left -= p[j]) <= 0) return int32_t(j);
  return int32_t(V - 1);
}

}  // namespace

std::vector<int32_t> sample_rows(JobControl& ctl, const Model& m, const SampleOptions& o) {
  const ModelSpec& s = m.spec;
  if (!s.causal || s.head != HeadKind::LMHead || s.input != InputKind::Tokens || s.cross_attention)
    throw Error("INVALID_ARGUMENT", "sampling needs a decoder-only language model");
  if (o.rows == 0 || o.length < 2) throw Error("INVALID_ARGUMENT", "sampling needs at least one row of at least 2 tokens");
  if (s.max_positions > 0 && o.length > s.max_positions)
    throw Error("INVALID_ARGUMENT", "sampled rows of " + std::to_string(o.length) + " tokens exceed the model's " +
                                        std::to_string(s.max_positions) + " positions");
  if (o.start < 0 || size_t(o.start) >= s.vocab) throw Error("INVALID_ARGUMENT", "the start token is not in the vocabulary");
  if (!(o.temperature > 0) || !std::isfinite(o.temperature)) throw Error("INVALID_ARGUMENT", "the sampling temperature must be a positive number");
  if (o.group == 0) throw Error("INVALID_ARGUMENT", "sampling: group must be at least 1");
  const size_t V = s.vocab, L = o.length;
  std::vector<int32_t> out(o.rows * L);
  std::vector<double> p(V);
  Mulberry32 random(o.seed);
  const double total = double(o.rows) * double(L - 1);
  ForwardOptions fo;
  fo.output = Output::Logits;
  // the forward passes report nothing of their own (their layer counts): progress is the tokens sampled
  JobControl step_ctl = ctl.nested();
  for (size_t first = 0; first < o.rows; first += o.group) {
    const size_t n = std::min(o.group, o.rows - first);
    // the last token of a row is drawn, never run: L − 1 positions are cached
    KVCache cache(s.layers, n, L - 1, s.n_kv_heads * s.head_dim);
    std::vector<int32_t> step(n, o.start);
    for (size_t b = 0; b < n; ++b) out[(first + b) * L] = o.start;
    for (size_t t = 1; t < L; ++t) {
      ctl.check();
      ForwardInput in;
      in.ids = step.data();
      in.batch = n;
      in.seq = 1;
      in.cache = &cache;
      ForwardResult r = forward(step_ctl, m, in, fo);
      for (size_t b = 0; b < n; ++b) {
        const int32_t next = draw(r.logits.data() + b * V, V, o.temperature, random.next(), p);
        out[(first + b) * L + t] = next;
        step[b] = next;
      }
      ctl.progress(double(first) * double(L - 1) + double(n) * double(t), total);
    }
  }
  return out;
}

}  // namespace ffm::model
