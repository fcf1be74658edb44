// Internals of sgemm shared by the driver (gemm.cc) and the micro-kernel files (gemm_<isa>.cc).
//
// A micro-kernel computes one MR×NR tile of C from a packed A micro-panel and a packed B micro-panel:
//   a: kc steps of MR floats (A[i0..i0+MR, k] for k = 0..kc-1), rows past the matrix edge are zero;
//   b: kc steps of NR floats (B[k, j0..j0+NR]), columns past the edge are zero;
//   C[0..mr, 0..nr] = alpha · (a·b) + beta · C    (beta == 0: C is written without being read).
// mr ≤ MR and nr ≤ NR are the live part of the tile at the matrix edge; the kernel never touches C outside it.
// The blocking sizes say how big the packed blocks are: KC (depth of one pass), NC (columns of B packed at
// once, kept in L2) and MC (rows of A packed at once, kept in L3); MC is a multiple of MR, NC of NR.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace ffm::gemm_detail {

using MicroKernel = void (*)(size_t kc, const float* a, const float* b, float* c, size_t ldc, size_t mr, size_t nr,
                             float alpha, float beta);

struct KernelSpec {
  const char* name;
  size_t mr, nr;
  size_t kc, mc, nc;
  MicroKernel micro;
};

// Each returns its kernel's description; the SIMD ones exist only where the compiler can target them, and
// must be called only when the CPU supports them (see supported_kernels in gemm.cc).
const KernelSpec& portable_kernel();
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FFM_GEMM_X86 1
const KernelSpec& avx2_kernel();
const KernelSpec& avx512_kernel();
#endif

// Scalar edge update shared by the kernels: C[mr×nr] = alpha·tile + beta·C, tile row stride `nr_full`.
inline void update_edge(const float* tile, size_t nr_full, float* c, size_t ldc, size_t mr, size_t nr, float alpha,
                        float beta) {
  for (size_t i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    const float* ti = tile + i * nr_full;
    if (beta == 0.0f) {
      for (size_t j = 0; j < nr; ++j) ci[j] = alpha * ti[j];
    } else {
      for (size_t j = 0; j < nr; ++j) ci[j] = alpha * ti[j] + beta * ci[j];
    }
  }
}

}  // namespace ffm::gemm_detail

namespace ffm {
class ThreadPool;

// sgemm with the micro-kernel named by `kernel` ("portable", "avx2", "avx512"; nullptr: FFMERGE_GEMM_KERNEL or
// the best supported). Throws Error(INVALID_ARGUMENT) for a name that is unknown or unsupported on this CPU.
// For tests and benchmarks that compare kernels in one process without touching the environment.
void sgemm_with_kernel(const char* kernel, ThreadPool* pool, bool trans_a, bool trans_b, size_t M, size_t N, size_t K,
                       float alpha, const float* A, size_t lda, const float* B, size_t ldb, float beta, float* C,
                       size_t ldc);

// The kernels this CPU can run, best last ("portable" always first). Used by tests and benchmarks to force
// each in turn through FFMERGE_GEMM_KERNEL.
std::vector<std::string> sgemm_supported_kernels();
}  // namespace ffm
