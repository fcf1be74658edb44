// Portable micro-kernel: plain C++ the compiler vectorises for the baseline ISA (SSE2 on x86-64, NEON on
// arm64). 6×8 keeps 12 four-wide accumulators, which fits the 16 vector registers of SSE2 and NEON.
#include "core/gemm_kernels.h"

namespace ffm::gemm_detail {
namespace {

constexpr size_t MR = 6, NR = 8;

void micro_portable(size_t kc, const float* a, const float* b, float* c, size_t ldc, size_t mr, size_t nr, float alpha,
                    float beta) {
  float acc[MR][NR] = {};
  for (size_t k = 0; k < kc; ++k) {
    const float* bk = b + k * NR;
    const float* ak = a + k * MR;
    for (size_t i = 0; i < MR; ++i) {
      const float ai = ak[i];
      for (size_t j = 0; j < NR; ++j) acc[i][j] += ai * bk[j];
    }
  }
  update_edge(&acc[0][0], NR, c, ldc, mr, nr, alpha, beta);
}

}  // namespace

const KernelSpec& portable_kernel() {
  static const KernelSpec spec{"portable", MR, NR, /*kc=*/256, /*mc=*/MR * 64, /*nc=*/NR * 64, micro_portable};
  return spec;
}

}  // namespace ffm::gemm_detail
