// Plain two-pass fp64 Pearson cross-correlation: the oracle the correlation tests (CPU and CUDA) compare
// against.
#pragma once
#include <cmath>
#include <cstddef>
#include <vector>

namespace ffm_test {

// x is n × dx, y is n × dy (row-major); returns dx × dy correlations, 0 where a std is 0.
inline std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& y, size_t n, size_t dx,
                              size_t dy) {
  std::vector<double> mx(dx, 0), my(dy, 0), sx(dx, 0), sy(dy, 0), c(dx * dy, 0);
  for (size_t r = 0; r < n; ++r) {
    for (size_t a = 0; a < dx; ++a) mx[a] += x[r * dx + a];
    for (size_t b = 0; b < dy; ++b) my[b] += y[r * dy + b];
  }
  for (auto& v : mx) v /= double(n);
  for (auto& v : my) v /= double(n);
  for (size_t r = 0; r < n; ++r) {
    for (size_t a = 0; a < dx; ++a) {
      const double u = x[r * dx + a] - mx[a];
      sx[a] += u * u;
      for (size_t b = 0; b < dy; ++b) c[a * dy + b] += u * (y[r * dy + b] - my[b]);
    }
    for (size_t b = 0; b < dy; ++b) {
      const double v = y[r * dy + b] - my[b];
      sy[b] += v * v;
    }
  }
  for (size_t a = 0; a < dx; ++a)
    for (size_t b = 0; b < dy; ++b) {
      const double d = std::sqrt(sx[a] * sy[b]);
      c[a * dy + b] = d > 0 ? c[a * dy + b] / d : 0.0;
    }
  return c;
}

}  // namespace ffm_test
