// Each nn op against a plain double-precision reference on random inputs of odd sizes.
#include <cmath>
#include <random>
#include <vector>

#include "core/nn/ops.h"
#include "core/thread_pool.h"
#include "tests/check.h"

using namespace ffm;

namespace {
std::vector<float> randv(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(g);
  return v;
}
double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}
ThreadPool& pool() {
  static ThreadPool p(3);
  return p;
}
}  // namespace

TEST(layernorm_matches_double_reference) {
  const size_t rows = 37, d = 53;
  auto x = randv(rows * d, 1, 3.0f), g = randv(d, 2), b = randv(d, 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] += 10.0f;  // a large mean must not hurt the variance
  std::vector<float> y(rows * d);
  nn::layernorm(&pool(), x.data(), y.data(), rows, d, g.data(), b.data(), 1e-5f);
  std::vector<double> ref(rows * d);
  for (size_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (size_t i = 0; i < d; ++i) mean += x[r * d + i];
    mean /= d;
    for (size_t i = 0; i < d; ++i) var += (x[r * d + i] - mean) * (x[r * d + i] - mean);
    var /= d;
    for (size_t i = 0; i < d; ++i) ref[r * d + i] = (x[r * d + i] - mean) / std::sqrt(var + 1e-5) * g[i] + b[i];
  }
  CHECK(max_abs_diff(y, ref) < 2e-5);
}

TEST(rmsnorm_matches_double_reference) {
  const size_t rows = 29, d = 67;
  auto x = randv(rows * d, 4, 2.0f), g = randv(d, 5);
  std::vector<float> y(rows * d);
  nn::rmsnorm(&pool(), x.data(), y.data(), rows, d, g.data(), 1e-5f);
  std::vector<double> ref(rows * d);
  for (size_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (size_t i = 0; i < d; ++i) ss += double(x[r * d + i]) * x[r * d + i];
    double inv = 1.0 / std::sqrt(ss / d + 1e-5);
    for (size_t i = 0; i < d; ++i) ref[r * d + i] = x[r * d + i] * inv * g[i];
  }
  CHECK(max_abs_diff(y, ref) < 2e-5);
}

TEST(rmsnorm_heads_normalises_each_head_in_place_and_leaves_the_rest) {
  // rows of a fused qkv buffer: 5 query heads of 7 at column 0, then 11 columns the call must not touch
  const size_t rows = 13, heads = 5, hd = 7, ld = heads * hd + 11;
  auto x = randv(rows * ld, 8, 2.0f), g = randv(hd, 9);
  std::vector<float> y = x;
  nn::rmsnorm_heads(&pool(), y.data(), ld, rows, heads, hd, g.data(), 1e-6f);
  std::vector<double> ref(x.begin(), x.end());
  for (size_t r = 0; r < rows; ++r)
    for (size_t h = 0; h < heads; ++h) {
      const size_t o = r * ld + h * hd;
      double ss = 0;
      for (size_t i = 0; i < hd; ++i) ss += double(x[o + i]) * x[o + i];
      const double inv = 1.0 / std::sqrt(ss / hd + 1e-6);
      for (size_t i = 0; i < hd; ++i) ref[o + i] = x[o + i] * inv * g[i];
    }
  CHECK(max_abs_diff(y, ref) < 2e-5);
}

TEST(activations_match_double_formulas) {
  auto x = randv(1001, 6, 3.0f);
  const double pi = 3.14159265358979323846;
  for (float v : x) {
    double d = v;
    double gelu_new = 0.5 * d * (1 + std::tanh(std::sqrt(2 / pi) * (d + 0.044715 * d * d * d)));
    double gelu = 0.5 * d * (1 + std::erf(d / std::sqrt(2.0)));
    double silu = d / (1 + std::exp(-d));
    CHECK_NEAR(nn::activation_value(nn::Activation::GeluNew, v), gelu_new, 1e-5);
    CHECK_NEAR(nn::activation_value(nn::Activation::GeluErf, v), gelu, 1e-5);
    CHECK_NEAR(nn::activation_value(nn::Activation::Silu, v), silu, 1e-5);
    CHECK_NEAR(nn::activation_value(nn::Activation::Relu, v), d > 0 ? d : 0, 0);
  }
  // NaN in, NaN out, for every activation (tester EV: relu made it 0, so a NaN weight gave finite logits)
  for (auto act : {nn::Activation::GeluNew, nn::Activation::GeluErf, nn::Activation::Silu, nn::Activation::Relu})
    CHECK(std::isnan(nn::activation_value(act, NAN)));
  auto up = randv(1001, 7), gate = randv(1001, 8), a = up;
  nn::gated_activate(&pool(), nn::Activation::Silu, gate.data(), a.data(), a.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK_NEAR(a[i], gate[i] / (1 + std::exp(-double(gate[i]))) * up[i], 1e-5);
}

TEST(linear_with_bias_and_strides_matches_reference) {
  const size_t rows = 19, in = 45, out = 31, ldx = 50, ldy = 40;
  auto x = randv(rows * ldx, 9), w = randv(out * in, 10), b = randv(out, 11);
  std::vector<float> y(rows * ldy, 123.0f);
  nn::linear(&pool(), x.data(), rows, in, w.data(), b.data(), out, y.data(), ldx, ldy);
  for (size_t r = 0; r < rows; ++r)
    for (size_t j = 0; j < out; ++j) {
      double acc = b[j];
      for (size_t k = 0; k < in; ++k) acc += double(x[r * ldx + k]) * w[j * in + k];
      CHECK_NEAR(y[r * ldy + j], acc, 1e-4);
    }
  CHECK(y[ldy - 1] == 123.0f);  // columns past `out` are not written
}

TEST(rope_rotate_half_matches_reference) {
  const size_t rows = 13, heads = 3, hd = 10, ld = 37;
  auto x = randv(rows * ld, 12), orig = x;
  std::vector<int32_t> pos(rows);
  for (size_t r = 0; r < rows; ++r) pos[r] = int32_t((r * 7) % 50);
  nn::rope(&pool(), x.data(), ld, rows, pos.data(), heads, hd, hd, 10000.0f, {});
  for (size_t r = 0; r < rows; ++r)
    for (size_t h = 0; h < heads; ++h)
      for (size_t i = 0; i < hd / 2; ++i) {
        double ang = pos[r] * std::pow(10000.0, -2.0 * i / hd);
        double a = orig[r * ld + h * hd + i], b = orig[r * ld + h * hd + i + hd / 2];
        CHECK_NEAR(x[r * ld + h * hd + i], a * std::cos(ang) - b * std::sin(ang), 1e-4);
        CHECK_NEAR(x[r * ld + h * hd + i + hd / 2], b * std::cos(ang) + a * std::sin(ang), 1e-4);
      }
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = heads * hd; c < ld; ++c) CHECK(x[r * ld + c] == orig[r * ld + c]);  // other columns untouched
}

// Llama 3's and linear RoPE scaling against transformers' rope init, transcribed to numpy float32 (as torch
// computes it on float32 tensors): the values scripts/rope-scaling-reference.py prints.
TEST(rope_inv_freq_scaling_matches_transformers) {
  nn::RopeScaling l3;
  l3.type = nn::RopeScaling::Type::Llama3;
  l3.factor = 8.0f, l3.low_freq_factor = 1.0f, l3.high_freq_factor = 4.0f, l3.original_max_positions = 1024.0f;
  // kept (two high frequencies), blended (wavelength 628 between 256 and 1024), divided by the factor
  const std::vector<float> small = nn::rope_inv_freq(10000.0f, 8, l3);
  const double want_small[] = {1.0, 0.10000000149011612, 0.003086760640144348, 0.0001250000059371814};
  for (size_t i = 0; i < 4; ++i) CHECK_NEAR(small[i], want_small[i], 1e-6 * want_small[i]);
  // Llama 3.2's own settings: theta 500000, head_dim 64, factor 32, low 1, high 4, original 8192
  l3.factor = 32.0f, l3.original_max_positions = 8192.0f;
  const std::vector<float> big = nn::rope_inv_freq(500000.0f, 64, l3);
  const size_t idx[] = {0, 14, 15, 16, 17, 31};
  const double want_big[] = {1.0, 0.0032114461064338684, 0.0012905480107292533, 0.000429556705057621, 9.708286233944818e-05, 9.41830720080361e-08};
  for (size_t j = 0; j < 6; ++j) CHECK_NEAR(big[idx[j]], want_big[j], 1e-6 * want_big[j]);
  nn::RopeScaling lin;
  lin.type = nn::RopeScaling::Type::Linear;
  lin.factor = 4.0f;
  const std::vector<float> linear = nn::rope_inv_freq(10000.0f, 8, lin);
  const double want_linear[] = {0.25, 0.02500000037252903, 0.0024999999441206455, 0.0002500000118743628};
  for (size_t i = 0; i < 4; ++i) CHECK_NEAR(linear[i], want_linear[i], 1e-6 * want_linear[i]);
  // no scaling: the default frequencies, which the rotation test above checks against its double reference
  CHECK(nn::rope_inv_freq(10000.0f, 8, {})[1] == 1.0f / std::pow(10000.0f, 2.0f / 8.0f));
}

// Double reference of causal / masked / sliding-window grouped-query attention (query i sits at position
// p = i + seq_k − seq_q; it sees key j when j ≤ p and, with a window, p − j < window).
static std::vector<double> attention_ref(const nn::AttentionDims& dm, const std::vector<float>& q, size_t ldq,
                                         const std::vector<float>& k, size_t ldk, const std::vector<float>& v,
                                         size_t ldv, bool causal, const uint8_t* km, double scale,
                                         size_t window = 0) {
  const size_t hd = dm.head_dim, group = dm.n_heads / dm.n_kv_heads, W = dm.n_heads * hd;
  std::vector<double> out(dm.batch * dm.seq_q * W, 0.0);
  for (size_t b = 0; b < dm.batch; ++b)
    for (size_t h = 0; h < dm.n_heads; ++h)
      for (size_t i = 0; i < dm.seq_q; ++i) {
        std::vector<double> s(dm.seq_k, -INFINITY);
        double mx = -INFINITY;
        for (size_t j = 0; j < dm.seq_k; ++j) {
          const size_t p = i + (causal ? dm.seq_k - dm.seq_q : 0);
          if ((causal && j > p) || (window && p - j >= window) || (km && !km[b * dm.seq_k + j])) continue;
          double acc = 0;
          for (size_t c = 0; c < hd; ++c)
            acc += double(q[(b * dm.seq_q + i) * ldq + h * hd + c]) * k[(b * dm.seq_k + j) * ldk + (h / group) * hd + c];
          s[j] = acc * scale;
          mx = std::max(mx, s[j]);
        }
        if (mx == -INFINITY) continue;
        double sum = 0;
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (size_t j = 0; j < dm.seq_k; ++j)
          for (size_t c = 0; c < hd; ++c)
            out[(b * dm.seq_q + i) * W + h * hd + c] += s[j] / sum * v[(b * dm.seq_k + j) * ldv + (h / group) * hd + c];
      }
  return out;
}

TEST(causal_gqa_attention_with_padding_matches_reference) {
  nn::AttentionDims dm{3, 11, 11, 6, 2, 5};
  const size_t ld = (6 + 2 * 2) * 5 + 3;  // fused qkv rows with slack
  auto qkv = randv(dm.batch * dm.seq_q * ld, 13);
  std::vector<uint8_t> km(dm.batch * dm.seq_k, 1);
  for (size_t j = 8; j < 11; ++j) km[1 * 11 + j] = 0;  // right padding in sequence 1
  km[2 * 11 + 0] = 0;                                   // left padding in sequence 2: query 0 sees nothing
  const size_t W = dm.n_heads * dm.head_dim;
  std::vector<float> out(dm.batch * dm.seq_q * W, 7.0f);
  const float* q = qkv.data();
  const float* k = q + 30;
  const float* v = k + 10;
  nn::attention(&pool(), dm, q, ld, k, ld, v, ld, out.data(), W, true, km.data(), 0.4472136f);
  std::vector<float> kv(qkv.begin() + 30, qkv.end()), vv(qkv.begin() + 40, qkv.end());
  kv.resize(qkv.size());
  vv.resize(qkv.size());
  auto ref = attention_ref(dm, qkv, ld, kv, ld, vv, ld, true, km.data(), 0.4472136);
  CHECK(max_abs_diff(out, ref) < 1e-5);
}

TEST(causal_attention_longer_than_one_query_block_matches_reference) {
  nn::AttentionDims dm{2, 150, 150, 4, 1, 8};  // 150 queries: three causal query blocks, MQA
  const size_t W = 4 * 8, ld = 6 * 8;
  auto qkv = randv(2 * 150 * ld, 17);
  std::vector<uint8_t> km(2 * 150, 1);
  for (size_t j = 140; j < 150; ++j) km[150 + j] = 0;
  std::vector<float> out(2 * 150 * W);
  nn::attention(&pool(), dm, qkv.data(), ld, qkv.data() + W, ld, qkv.data() + W + 8, ld, out.data(), W, true, km.data(),
                0.35f);
  std::vector<float> kv(qkv.begin() + W, qkv.end()), vv(qkv.begin() + W + 8, qkv.end());
  kv.resize(qkv.size());
  vv.resize(qkv.size());
  auto ref = attention_ref(dm, qkv, ld, kv, ld, vv, ld, true, km.data(), 0.35);
  CHECK(max_abs_diff(out, ref) < 1e-5);
}

TEST(sliding_window_attention_across_query_blocks_and_after_a_cache_matches_reference) {
  // 150 queries = three causal query blocks; window 37 cuts inside each block; padding on the right of
  // sequence 1. Then the last 20 queries alone against all 150 keys (decoding after a KV cache).
  for (size_t sq : {size_t(150), size_t(20)}) {
    nn::AttentionDims dm{2, sq, 150, 4, 2, 8};
    const size_t W = 4 * 8, kvw = 2 * 8;
    auto q = randv(2 * sq * W, 19), k = randv(2 * 150 * kvw, 23), v = randv(2 * 150 * kvw, 29);
    std::vector<uint8_t> km(2 * 150, 1);
    for (size_t j = 140; j < 150; ++j) km[150 + j] = 0;
    std::vector<float> out(2 * sq * W);
    nn::attention(&pool(), dm, q.data(), W, k.data(), kvw, v.data(), kvw, out.data(), W, true, km.data(), 0.35f, 37);
    auto ref = attention_ref(dm, q, W, k, kvw, v, kvw, true, km.data(), 0.35, 37);
    CHECK(max_abs_diff(out, ref) < 1e-5);
    auto full = attention_ref(dm, q, W, k, kvw, v, kvw, true, km.data(), 0.35);
    CHECK(max_abs_diff(out, full) > 1e-3);  // the window matters here
  }
}

TEST(a_nan_query_row_comes_out_nan_and_a_row_without_keys_zero) {
  // A NaN in a query weight makes every score of its rows NaN, which std::max never picks: such a row was taken
  // for one with no key to look at and zero-filled, so the NaN vanished (PyTorch gives NaN). Padding still zeros.
  nn::AttentionDims dm{1, 5, 5, 2, 2, 3};
  const size_t W = 2 * 3;
  auto q = randv(5 * W, 31), k = randv(5 * W, 37), v = randv(5 * W, 41);
  q[2 * W + 3] = std::nanf("");  // query 2, head 1
  std::vector<uint8_t> km(5, 1);
  km[0] = 0;  // query 0 (causal) sees no key
  std::vector<float> out(5 * W, 7.0f);
  nn::attention(&pool(), dm, q.data(), W, k.data(), W, v.data(), W, out.data(), W, true, km.data(), 0.5f);
  for (size_t c = 0; c < 3; ++c) {
    CHECK(std::isnan(out[2 * W + 3 + c]));   // the NaN head of query 2
    CHECK(std::isfinite(out[2 * W + c]));    // its other head
    CHECK(out[0 * W + c] == 0.0f && out[0 * W + 3 + c] == 0.0f);  // no key: zeros
  }
}

TEST(cross_attention_shapes_match_reference) {
  nn::AttentionDims dm{2, 7, 9, 4, 4, 3};
  const size_t W = 12;
  auto q = randv(2 * 7 * W, 14), k = randv(2 * 9 * W, 15), v = randv(2 * 9 * W, 16);
  std::vector<uint8_t> km(2 * 9, 1);
  km[9 + 8] = 0;
  std::vector<float> out(2 * 7 * W);
  nn::attention(&pool(), dm, q.data(), W, k.data(), W, v.data(), W, out.data(), W, false, km.data(), 0.5f);
  auto ref = attention_ref(dm, q, W, k, W, v, W, false, km.data(), 0.5);
  CHECK(max_abs_diff(out, ref) < 1e-5);
}

TEST_MAIN()
