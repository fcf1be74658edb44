// Internals of sgemm shared by the driver (gemm.cc) and the micro-kernel files (gemm_<isa>.cc).
//
// A micro-kernel computes one MR×NR tile of C:
//   C[0..mr, 0..nr] = alpha · Σ_k a(i, k)·b(k, j) + beta · C      (beta == 0: C is written without being read)
// a(i, k) = a[i·a_rs + k·a_cs] for i < mr; b(k, 0..NR) = the NR contiguous floats at b + k·b_ks.
// Packed operands have a_rs = 1, a_cs = MR and b_ks = NR (zero-padded to full MR rows / NR columns); the driver
// also passes A and B straight from the caller's memory when packing would not pay (see gemm.cc):
//   a_rs == 1: MR contiguous floats per k are read (the driver ensures they exist: mr == MR or padded);
//   a_rs != 1: row i is read at a + i·a_rs + k·a_cs for i < mr only (rows past mr are never touched);
//   b: NR contiguous floats per k are read (the driver only passes unpacked B when nr == NR).
// mr ≤ MR and nr ≤ NR are the live part of the tile at the matrix edge; C outside it is never touched.
// The blocking sizes say how big the packed blocks are: KC (depth of one pass), NC (columns of B packed at
// once, kept in L2) and MC (rows of A packed at once, kept in L3); MC is a multiple of MR, NC of NR.
#pragma once
#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace ffm::gemm_detail {

using MicroKernel = void (*)(size_t kc, const float* a, size_t a_rs, size_t a_cs, const float* b, size_t b_ks,
                             float* c, size_t ldc, size_t mr, size_t nr, float alpha, float beta);

// dst[k·dst_stride + r] = src[r·ld_src + k] for r < rows, k < kc: the transposing copy behind packing
// row-major A and transposed B. Kernels may bring a SIMD version; null means the scalar one in gemm.cc.
using TransposeCopy = void (*)(const float* src, size_t ld_src, size_t rows, size_t kc, float* dst, size_t dst_stride);

// C[i, j] = alpha · Σ_k a[i·lda + k]·b[j·ldb + k] + beta · C[i, j] for i < m ≤ 4, j < n (beta == 0: C not
// read): the A·Bᵀ product of a few rows, as dot products that stream B's rows once. Used for short M with
// transposed B (one token through a Linear layer), where tiles would waste most of each vector.
using RowsDot = void (*)(size_t K, const float* a, size_t lda, size_t m, const float* b, size_t ldb, size_t n, float* c,
                         size_t ldc, float alpha, float beta);
constexpr size_t kRowsDotMaxRows = 4;

struct KernelSpec {
  const char* name;
  size_t mr, nr;
  size_t kc, mc, nc;
  MicroKernel micro;
  TransposeCopy transpose_copy;
  RowsDot rows_dot;  // null: the scalar one in gemm.cc
};

// Each returns its kernel's description; the SIMD ones exist only where the compiler can target them, and
// must be called only when the CPU supports them (see supported_kernels in gemm.cc).
const KernelSpec& portable_kernel();
// FFMERGE_GEMM_PORTABLE_ONLY builds what a non-x86 target gets (the portable kernel alone), e.g. for tools
// that do not emulate AVX-512, and to check that path compiles and passes on an x86 machine.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(FFMERGE_GEMM_PORTABLE_ONLY)
#define FFM_GEMM_X86 1
const KernelSpec& avx2_kernel();
const KernelSpec& avx512_kernel();
// AVX2 8×8-block transposing copy (gemm_avx2.cc), shared by the AVX2 and AVX-512 kernels.
void transpose_copy_avx2(const float* src, size_t ld_src, size_t rows, size_t kc, float* dst, size_t dst_stride);
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

// 64-byte aligned float scratch (packing buffers, tiles).
struct AlignedDelete {
  void operator()(float* p) const { ::operator delete(p, std::align_val_t(64)); }
};
using AlignedFloats = std::unique_ptr<float[], AlignedDelete>;
inline AlignedFloats aligned_floats(size_t n) {
  return AlignedFloats(static_cast<float*>(::operator new(std::max<size_t>(n, 1) * sizeof(float), std::align_val_t(64))));
}

}  // namespace ffm::gemm_detail

namespace ffm {
class ThreadPool;
class JobControl;

// sgemm with the micro-kernel named by `kernel` ("portable", "avx2", "avx512"; nullptr: FFMERGE_GEMM_KERNEL or
// the best supported). Throws Error(INVALID_ARGUMENT) for a name that is unknown or unsupported on this CPU.
// For tests and benchmarks that compare kernels in one process without touching the environment, and for the
// binding's matmul job: with `ctl`, every thread polls its cancel flag between cache blocks and stops early,
// and the call then throws Cancelled (C is left partly written), so an abort lands within one block.
void sgemm_with_kernel(const char* kernel, ThreadPool* pool, bool trans_a, bool trans_b, size_t M, size_t N, size_t K,
                       float alpha, const float* A, size_t lda, const float* B, size_t ldb, float beta, float* C,
                       size_t ldc, const JobControl* ctl = nullptr);

// The kernels this CPU can run, best last ("portable" always first). Used by tests and benchmarks to force
// each in turn through FFMERGE_GEMM_KERNEL.
std::vector<std::string> sgemm_supported_kernels();
}  // namespace ffm
