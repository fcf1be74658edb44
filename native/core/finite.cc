#include "core/finite.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>

#include "core/error.h"

namespace ffm {

std::string first_non_finite(JobControl& ctl, const float* x, size_t n, size_t w, const char* column, size_t row0) {
  std::atomic<size_t> at{SIZE_MAX};
  ctl.pool().parallel_for(n, std::max<size_t>(1, 16384 / std::max<size_t>(w, 1)), [&](size_t r0, size_t r1) {
    // x − x is 0 for finite x and NaN otherwise: one vectorisable pass, the exact spot only on failure
    float poison = 0.0f;
    for (size_t k = r0 * w; k < r1 * w; ++k) poison += x[k] - x[k];
    if (poison == 0.0f) return;
    for (size_t k = r0 * w; k < r1 * w; ++k)
      if (!std::isfinite(x[k])) {
        size_t seen = at.load();
        while (k < seen && !at.compare_exchange_weak(seen, k)) {}
        return;
      }
  });
  const size_t k = at.load();
  if (k == SIZE_MAX) return "";
  return std::string(std::isnan(x[k]) ? "NaN" : "Inf") + " at row " + std::to_string(row0 + k / w) + ", " + column +
         " " + std::to_string(k % w);
}

void refuse_non_finite(JobControl& ctl, const float* x, size_t n, size_t w, const char* code, const std::string& what,
                       const char* column, const char* tail, size_t row0) {
  const std::string bad = first_non_finite(ctl, x, n, w, column, row0);
  if (!bad.empty()) throw Error(code, what + " hold " + bad + tail);
}

}  // namespace ffm
