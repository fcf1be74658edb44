// A small random LLaMA-style model (RMSNorm, rotary, SwiGLU, optional GQA) for the C++ tests of the forward
// pass and of what runs inside it: the spec, seeded random tensors, and a pool shared by a test binary.
#pragma once
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/model/weights.h"
#include "core/thread_pool.h"

namespace ffm::test {

inline ThreadPool& pool() {
  static ThreadPool p(3);
  return p;
}

inline model::ModelSpec tiny_llama_spec(size_t d_model, size_t n_heads, size_t n_kv_heads, size_t d_ff, size_t vocab) {
  model::ModelSpec s;
  s.family = "test";
  s.layers = 3;
  s.d_model = d_model;
  s.n_heads = n_heads;
  s.n_kv_heads = n_kv_heads;
  s.head_dim = d_model / n_heads;
  s.d_ff = d_ff;
  s.vocab = vocab;
  s.max_positions = 64;
  s.norm = model::NormKind::RMSNorm;
  s.positions = model::PositionKind::Rotary;
  s.activation = nn::Activation::Silu;
  s.gated_ff = true;
  return s;
}

// n normal(offset, 0.3) floats.
inline model::Buffer rnd(size_t n, std::mt19937& g, float offset = 0) {
  std::normal_distribution<float> nd(0.0f, 0.3f);
  auto v = std::make_shared<std::vector<float>>(n);
  for (auto& x : *v) x = offset + nd(g);
  return v;
}

// Every slot a spec from tiny_llama_spec needs, seeded (norm weights around 1).
inline std::map<std::string, model::Buffer> tiny_llama_tensors(const model::ModelSpec& s, unsigned seed) {
  std::mt19937 g(seed);
  std::map<std::string, model::Buffer> t;
  const size_t d = s.d_model, f = s.d_ff;
  t["tok_emb"] = rnd(s.vocab * d, g);
  t["final_norm_w"] = rnd(d, g, 1);
  for (size_t l = 0; l < s.layers; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    t[p + "norm1_w"] = rnd(d, g, 1);
    t[p + "qkv_w"] = rnd(s.qkv_width() * d, g);
    t[p + "o_w"] = rnd(d * s.n_heads * s.head_dim, g);
    t[p + "norm2_w"] = rnd(d, g, 1);
    t[p + "ff.w_in"] = rnd(f * d, g);
    t[p + "ff.w_gate"] = rnd(f * d, g);
    t[p + "ff.w_out"] = rnd(d * f, g);
  }
  return t;
}

// Records what an FFCapture receives (a copy of each captured layer's rows).
struct CaptureCopy : model::FFCapture {
  int calls = 0;
  size_t d_ff, rows = 0;
  std::vector<std::vector<float>> data;
  explicit CaptureCopy(size_t f) : d_ff(f) {}
  void on_batch(JobControl&, const std::vector<const float*>& per_layer, size_t r) override {
    ++calls;
    rows = r;
    data.clear();
    for (auto* p : per_layer) data.emplace_back(p, p + r * d_ff);
  }
};

}  // namespace ffm::test
