// Portable micro-kernel: plain C++ for the baseline ISA (SSE2 on x86-64, NEON on arm64). 6×8 keeps 12
// four-wide accumulators, which fits the 16 vector registers of SSE2 and NEON. With GCC/Clang the
// accumulators are generic vector types, so they stay in registers (an array the edge code takes the
// address of would live in memory); other compilers get the scalar loop.
#include <cstring>

#include "core/gemm_kernels.h"

namespace ffm::gemm_detail {
namespace {

constexpr size_t MR = 6, NR = 8;

#if defined(__GNUC__)
typedef float v4f __attribute__((vector_size(16)));

void micro_portable(size_t kc, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t b_ks, float* c,
                    size_t ldc, size_t mr, size_t nr, float alpha, float beta) {
  // Rows past mr alias row 0 when A comes unpacked (a_rs != 1): computed, never stored.
  size_t row_off[MR];
  for (size_t i = 0; i < MR; ++i) row_off[i] = (a_rs == 1 || i < mr ? i : 0) * a_rs;
  v4f acc[MR][2] = {};
  for (size_t k = 0; k < kc; ++k, a += a_cs, b += b_ks) {
    v4f b0, b1;
    std::memcpy(&b0, b, sizeof b0);
    std::memcpy(&b1, b + 4, sizeof b1);
    for (size_t i = 0; i < MR; ++i) {
      const float x = a[row_off[i]];
      const v4f ai = {x, x, x, x};
      acc[i][0] += ai * b0;
      acc[i][1] += ai * b1;
    }
  }
  float tile[MR * NR];
  std::memcpy(tile, acc, sizeof tile);
  update_edge(tile, NR, c, ldc, mr, nr, alpha, beta);
}
#else
void micro_portable(size_t kc, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t b_ks, float* c,
                    size_t ldc, size_t mr, size_t nr, float alpha, float beta) {
  float acc[MR * NR] = {};
  for (size_t k = 0; k < kc; ++k, a += a_cs, b += b_ks)
    for (size_t i = 0; i < MR; ++i) {
      const float x = a[(a_rs == 1 || i < mr ? i : 0) * a_rs];
      for (size_t j = 0; j < NR; ++j) acc[i * NR + j] += x * b[j];
    }
  update_edge(acc, NR, c, ldc, mr, nr, alpha, beta);
}
#endif

}  // namespace

const KernelSpec& portable_kernel() {
  static const KernelSpec spec{"portable", MR, NR, /*kc=*/256, /*mc=*/MR * 64, /*nc=*/NR * 64, micro_portable};
  return spec;
}

}  // namespace ffm::gemm_detail
