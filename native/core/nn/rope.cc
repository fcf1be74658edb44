#include <cmath>
#include <functional>
#include <vector>

#include "core/nn/ops.h"
#include "core/thread_pool.h"

namespace ffm::nn {

std::vector<float> rope_inv_freq(float theta, size_t rot_dim, const RopeScaling& sc) {
  const size_t half = rot_dim / 2;
  // inv_freq[i] = 1 / theta^(2i/rot_dim), in float32 like transformers' default rope init.
  std::vector<float> inv_freq(half);
  for (size_t i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(theta, float(int64_t(2 * i)) / float(int64_t(rot_dim)));
  if (sc.type == RopeScaling::Type::Linear) {
    for (float& f : inv_freq) f = f / sc.factor;
  } else if (sc.type == RopeScaling::Type::Llama3) {
    // transformers' _compute_llama3_parameters: the wavelengths against the original context decide, the
    // wavelength bounds as Python computes them (double) and compared in float32, as torch compares them
    const float low_wavelen = float(double(sc.original_max_positions) / double(sc.low_freq_factor));
    const float high_wavelen = float(double(sc.original_max_positions) / double(sc.high_freq_factor));
    const float two_pi = float(2.0 * 3.141592653589793);  // 2 * math.pi, cast to float32 by torch
    const float spread = float(double(sc.high_freq_factor) - double(sc.low_freq_factor));
    // A Python number divided by a tensor is torch's __rtruediv__, reciprocal() * number: two roundings.
    for (float& f : inv_freq) {
      const float wavelen = (1.0f / f) * two_pi;
      if (wavelen > low_wavelen) {
        f = f / sc.factor;  // low frequency: interpolated
      } else if (!(wavelen < high_wavelen)) {
        const float smooth = ((1.0f / wavelen) * sc.original_max_positions - sc.low_freq_factor) / spread;
        f = (1.0f - smooth) * f / sc.factor + smooth * f;  // between: blended
      }  // high frequency: kept
    }
  }
  return inv_freq;
}

void rope(ThreadPool* pool, float* x, size_t ld, size_t rows, const int32_t* positions, size_t n_heads,
          size_t head_dim, size_t rot_dim, float theta, const RopeScaling& scaling) {
  const size_t half = rot_dim / 2;
  const std::vector<float> inv_freq = rope_inv_freq(theta, rot_dim, scaling);
  auto body = [&](size_t r0, size_t r1) {
    std::vector<float> c(half), s(half);
    for (size_t r = r0; r < r1; ++r) {
      const float pos = float(positions[r]);
      for (size_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];  // float product, as torch computes freqs
        c[i] = float(std::cos(double(angle)));
        s[i] = float(std::sin(double(angle)));
      }
      float* row = x + r * ld;
      for (size_t h = 0; h < n_heads; ++h) {
        float* v = row + h * head_dim;
        // rotate_half: out[i] = v[i]·cos − v[i+half]·sin ; out[i+half] = v[i+half]·cos + v[i]·sin
        for (size_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * c[i] - b * s[i];
          v[i + half] = b * c[i] + a * s[i];
        }
      }
    }
  };
  if (pool) pool->parallel_for(rows, 32, body); else body(0, rows);
}

}  // namespace ffm::nn
