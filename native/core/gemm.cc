// sgemm driver: GotoBLAS/BLIS-style blocking around register-blocked micro-kernels (gemm_<isa>.cc).
//
// Loop nest of one thread (row-major C, vectors run along N):
//   for each MC rows of A (i0):          A block MC×KC packed into MR-row micro-panels (lives in L3)
//     for each KC slice of K (p0):       first slice applies the caller's beta, later ones accumulate
//       for each NC columns of B (j0):   B block KC×NC packed into NR-column micro-panels (lives in L2)
//         for each A micro-panel:        MR×KC, stays in L1 ...
//           for each B micro-panel:      ... while the B micro-panels stream past it
//             micro-kernel → MR×NR tile of C
// Packing handles both transposes and zero-pads the edges, so micro-kernels see one layout only. Where
// packing would cost more than it saves (narrow N, short M), kernels read A or B in place instead (see
// gemm_serial), and a few rows times a transposed B become dot products over B's rows.
// Every element of C sums its K products in the same order whatever the thread count: results are
// reproducible bit for bit across pool sizes.
// Threads split C into disjoint stripes (over M or N), each running the nest above with its own packing
// buffers: nothing is shared between threads or between concurrent calls.
#include "core/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/gemm_kernels.h"
#include "core/half.h"
#include "core/job.h"
#include "core/thread_pool.h"

namespace ffm {
namespace {

using gemm_detail::aligned_floats;
using gemm_detail::AlignedFloats;
using gemm_detail::KernelSpec;

// ---- kernel choice --------------------------------------------------------------------------------------

// What this CPU can run, best last. Computed once; immutable afterwards.
const std::vector<const KernelSpec*>& supported_specs() {
  static const std::vector<const KernelSpec*> specs = [] {
    std::vector<const KernelSpec*> v{&gemm_detail::portable_kernel()};
#ifdef FFM_GEMM_X86
    __builtin_cpu_init();
    // __builtin_cpu_supports also checks that the OS saves the ymm/zmm state (XCR0).
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) v.push_back(&gemm_detail::avx2_kernel());
    if (__builtin_cpu_supports("avx512f")) v.push_back(&gemm_detail::avx512_kernel());
#endif
    return v;
  }();
  return specs;
}

struct KernelChoice {
  const KernelSpec* spec = nullptr;  // null: FFMERGE_GEMM_KERNEL asks for something unusable, see error
  std::string error;
};

// `forced` (from sgemm_with_kernel) or else FFMERGE_GEMM_KERNEL=portable|avx2|avx512 picks a kernel; unset,
// empty or "auto" means the best supported. The variable is read at every call (a getenv, no state kept).
KernelChoice choose_kernel(const char* forced) {
  const auto& specs = supported_specs();
  const char* env = forced ? forced : std::getenv("FFMERGE_GEMM_KERNEL");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return {specs.back(), {}};
  for (const KernelSpec* s : specs)
    if (std::strcmp(env, s->name) == 0) return {s, {}};
  const std::string want(env);
  const std::string what = forced ? "GEMM kernel \"" + want + "\"" : "FFMERGE_GEMM_KERNEL=" + want;
  if (want == "avx2" || want == "avx512" || want == "portable") {
    std::string names;
    for (const KernelSpec* k : specs) names += (names.empty() ? "" : ", ") + std::string(k->name);
    return {nullptr, what + " is not available with this CPU and build (available: " + names + ")"};
  }
  return {nullptr, what + " is not a GEMM kernel name (use auto, portable, avx2 or avx512)"};
}

size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
size_t round_up(size_t a, size_t m) { return ceil_div(a, m) * m; }

// The B operand: float32, or 16-bit floats (transposed B only: a Linear weight kept as its checkpoint stored
// it), widened to float32 while packing so the micro-kernels always see float32.
struct BOperand {
  const float* f32 = nullptr;
  const uint16_t* h16 = nullptr;
  Half type = Half::BF16;
  BOperand plus(size_t elems) const {
    BOperand b = *this;
    if (f32) b.f32 += elems;
    else b.h16 += elems;
    return b;
  }
};

// ---- packing ----------------------------------------------------------------------------------------------

// Scalar TransposeCopy: reads each source row sequentially, writes with stride dst_stride.
void transpose_copy_scalar(const float* src, size_t ld_src, size_t rows, size_t kc, float* dst, size_t dst_stride) {
  for (size_t r = 0; r < rows; ++r) {
    const float* s = src + r * ld_src;
    for (size_t k = 0; k < kc; ++k) dst[k * dst_stride + r] = s[k];
  }
}

// Packs op(A)[i0..i0+mc, p0..p0+kc] into ceil(mc/MR) micro-panels of kc×MR floats (row r of the panel at
// offset k·MR + r), zero rows past mc.
void pack_a(const KernelSpec& ks, bool trans_a, const float* A, size_t lda, size_t i0, size_t mc, size_t p0, size_t kc,
            float* dst) {
  const size_t MR = ks.mr;
  for (size_t r0 = 0; r0 < mc; r0 += MR, dst += MR * kc) {
    const size_t mr = std::min(MR, mc - r0);
    if (trans_a) {
      // op(A)(i, k) = A[k·lda + i]: each k step is mr contiguous floats.
      const float* src = A + p0 * lda + i0 + r0;
      for (size_t k = 0; k < kc; ++k, src += lda) {
        float* d = dst + k * MR;
        std::memcpy(d, src, mr * sizeof(float));
        for (size_t r = mr; r < MR; ++r) d[r] = 0.0f;
      }
    } else {
      // op(A)(i, k) = A[i·lda + k]: a transposing copy of mr rows.
      ks.transpose_copy(A + (i0 + r0) * lda + p0, lda, mr, kc, dst, MR);
      for (size_t r = mr; r < MR; ++r)
        for (size_t k = 0; k < kc; ++k) dst[k * MR + r] = 0.0f;
    }
  }
}

// Packs op(B)[p0..p0+kc, j0..j0+nc] into ceil(nc/NR) micro-panels of kc×NR floats (column c of the panel at
// offset k·NR + c), zero columns past nc.
void pack_b(const KernelSpec& ks, bool trans_b, const float* B, size_t ldb, size_t p0, size_t kc, size_t j0, size_t nc,
            float* dst) {
  const size_t NR = ks.nr;
  const size_t panels = ceil_div(nc, NR);
  if (!trans_b) {
    // op(B)(k, j) = B[k·ldb + j]: walk each row of B once, left to right, scattering NR-float pieces to the
    // panels (reading panel by panel instead would stride through memory one row per 128 bytes).
    const float* src = B + p0 * ldb + j0;
    for (size_t k = 0; k < kc; ++k, src += ldb) {
      for (size_t p = 0; p < panels; ++p) {
        const size_t c0 = p * NR, nr = std::min(NR, nc - c0);
        float* d = dst + p * NR * kc + k * NR;
        std::memcpy(d, src + c0, nr * sizeof(float));
        for (size_t c = nr; c < NR; ++c) d[c] = 0.0f;
      }
    }
    return;
  }
  // op(B)(k, j) = B[j·ldb + k]: B is stored N×K; a transposing copy of nr of its rows.
  for (size_t p = 0; p < panels; ++p, dst += NR * kc) {
    const size_t c0 = p * NR, nr = std::min(NR, nc - c0);
    ks.transpose_copy(B + (j0 + c0) * ldb + p0, ldb, nr, kc, dst, NR);
    for (size_t c = nr; c < NR; ++c)
      for (size_t k = 0; k < kc; ++k) dst[k * NR + c] = 0.0f;
  }
}

// Scalar RowsDot (the portable kernel's): four partial sums per dot product, so the compiler can keep
// several additions in flight without reassociating.
void rows_dot_scalar(size_t K, const float* a, size_t lda, size_t m, const float* b, size_t ldb, size_t n, float* c,
                     size_t ldc, float alpha, float beta) {
  for (size_t i = 0; i < m; ++i) {
    const float* ai = a + i * lda;
    for (size_t j = 0; j < n; ++j) {
      const float* bj = b + j * ldb;
      float s[4] = {0, 0, 0, 0};
      size_t k = 0;
      for (; k + 4 <= K; k += 4)
        for (size_t u = 0; u < 4; ++u) s[u] += ai[k + u] * bj[k + u];
      for (; k < K; ++k) s[0] += ai[k] * bj[k];
      const float v = alpha * ((s[0] + s[1]) + (s[2] + s[3]));
      float* cij = c + i * ldc + j;
      *cij = beta == 0.0f ? v : v + beta * *cij;
    }
  }
}

// pack_b for a transposed 16-bit B: each of the panel's nr rows (kc elements) is widened into `wide` (nr×kc,
// contiguous, so the widening loop vectorises), then the kernel's transposing copy packs it as pack_b does.
void pack_b_h16(const KernelSpec& ks, const uint16_t* B, Half type, size_t ldb, size_t p0, size_t kc, size_t j0,
                size_t nc, float* dst, float* wide) {
  const size_t NR = ks.nr;
  const size_t panels = ceil_div(nc, NR);
  for (size_t p = 0; p < panels; ++p, dst += NR * kc) {
    const size_t c0 = p * NR, nr = std::min(NR, nc - c0);
    for (size_t r = 0; r < nr; ++r) half_to_f32(type, B + (j0 + c0 + r) * ldb + p0, wide + r * kc, kc);
    ks.transpose_copy(wide, kc, nr, kc, dst, NR);
    for (size_t c = nr; c < NR; ++c)
      for (size_t k = 0; k < kc; ++k) dst[k * NR + c] = 0.0f;
  }
}

// rows_dot for a 16-bit B: blocks of B's rows are widened into a float32 scratch and handed to the kernel's
// rows_dot, so every dot product sums in the order it would on a float32 B.
void rows_dot_h16(const KernelSpec& ks, size_t K, const float* a, size_t lda, size_t m, const uint16_t* b, Half type,
                  size_t ldb, size_t n, float* c, size_t ldc, float alpha, float beta) {
  constexpr size_t kRows = 16;
  AlignedFloats wide = aligned_floats(kRows * K);
  for (size_t j0 = 0; j0 < n; j0 += kRows) {
    const size_t nb = std::min(kRows, n - j0);
    for (size_t j = 0; j < nb; ++j) half_to_f32(type, b + (j0 + j) * ldb, wide.get() + j * K, K);
    ks.rows_dot(K, a, lda, m, wide.get(), K, nb, c + j0, ldc, alpha, beta);
  }
}

// ---- one thread's loop nest ------------------------------------------------------------------------------

// Splits `total` into equal blocks of at most `max_block`, each a multiple of `unit` (except the last):
// K = 300 with KC = 256 gives 2×150 rather than 256 + 44, so no pass runs on a sliver.
size_t even_block(size_t total, size_t max_block, size_t unit) {
  const size_t blocks = ceil_div(total, max_block);
  return std::min(max_block, round_up(ceil_div(total, blocks), unit));
}

// When packing does not pay, micro-kernels read the caller's matrices directly:
//  * A unpacked when few B micro-panels share each A micro-panel (narrow N): packing A costs about as much as
//    the multiply-adds it feeds. Row-major A is read row by row; transposed A as MR contiguous floats per k,
//    which needs a full panel, so a partial last panel is still packed.
//  * B unpacked when it is stored K×N (no transpose) and few A micro-panels share each B micro-panel (short M),
//    as long as B is small enough to stay in cache, or M is so short that packing would cost more than the
//    strided reads (reading a large B panel by panel walks a new page every row). A partial last panel is
//    still packed.
constexpr size_t kDirectAMaxColumns = 512;      // N up to which A is read unpacked
constexpr size_t kDirectBMaxRows = 256;         // M up to which a cache-sized B is read unpacked
constexpr size_t kDirectBMaxFloats = 1 << 20;   // K·N of a B that stays in cache (4 MiB)
constexpr size_t kDirectBAlwaysMaxRows = 4;     // M this short reads B unpacked whatever its size
constexpr size_t kShortMKC = 8;                 // ... and in K slices this thin

// One thread's share: C[M×N] of a call whose C has `call_m` rows. The short-M strategies change the order in
// which an element sums its products, so they are chosen from call_m: a short last stripe of a longer C
// computes exactly what one thread would have.
void gemm_serial(const KernelSpec& spec, size_t call_m, bool trans_a, bool trans_b, size_t M, size_t N, size_t K,
                 float alpha, const float* A, size_t lda, const BOperand& Bop, size_t ldb, float beta, float* C,
                 size_t ldc, const JobControl* ctl) {
  const float* B = Bop.f32;  // null for a 16-bit B (always transposed: packed or widened, never read in place)
  KernelSpec ks = spec;
  if (!ks.transpose_copy) ks.transpose_copy = transpose_copy_scalar;
  if (!ks.rows_dot) ks.rows_dot = rows_dot_scalar;
  if (trans_b && call_m <= gemm_detail::kRowsDotMaxRows) {
    // A few rows times Bᵀ: dot products over B's rows. They need A's rows contiguous; a transposed A (K×M)
    // is copied into M short rows first.
    AlignedFloats rows;
    const float* a = A;
    size_t a_ld = lda;
    if (trans_a) {
      rows = aligned_floats(M * K);
      for (size_t k = 0; k < K; ++k)
        for (size_t i = 0; i < M; ++i) rows[i * K + k] = A[k * lda + i];
      a = rows.get();
      a_ld = K;
    }
    if (Bop.h16) rows_dot_h16(ks, K, a, a_ld, M, Bop.h16, Bop.type, ldb, N, C, ldc, alpha, beta);
    else ks.rows_dot(K, a, a_ld, M, B, ldb, N, C, ldc, alpha, beta);
    return;
  }
  const size_t MR = ks.mr, NR = ks.nr;
  // lda == 1 would make unpacked row-major A look like the column-contiguous layout to the kernel.
  const bool direct_a = N <= kDirectAMaxColumns && (trans_a || lda > 1);
  const bool short_m = call_m <= kDirectBAlwaysMaxRows;
  const bool direct_b = !trans_b && (short_m || (M <= kDirectBMaxRows && K * N <= kDirectBMaxFloats));
  // A very short M reading B unpacked takes K in thin slices, so that each pass over N reads a few rows of B
  // left to right (a stream the prefetcher follows) rather than a column of 128-byte pieces, one per row.
  const size_t kc_max = short_m && !trans_b ? kShortMKC : ks.kc;
  const size_t MC = even_block(M, ks.mc, MR), KC = even_block(K, kc_max, 1), NC = even_block(N, ks.nc, NR);
  AlignedFloats abuf = aligned_floats((direct_a ? MR : round_up(MC, MR)) * KC);
  AlignedFloats bbuf = aligned_floats(KC * (direct_b ? NR : round_up(NC, NR)));
  AlignedFloats wide = Bop.h16 ? aligned_floats(NR * KC) : AlignedFloats();
  for (size_t i0 = 0; i0 < M; i0 += MC) {
    const size_t mc = std::min(MC, M - i0);
    for (size_t p0 = 0; p0 < K; p0 += KC) {
      // A stop asked for lands here, between cache blocks; the caller turns it into Cancelled.
      if (ctl && ctl->cancelled()) return;
      const size_t kc = std::min(KC, K - p0);
      const float beta_pass = p0 == 0 ? beta : 1.0f;
      // Packed A panels; with direct A only a partial last panel of transposed A (into abuf).
      if (!direct_a) pack_a(ks, trans_a, A, lda, i0, mc, p0, kc, abuf.get());
      else if (trans_a && mc % MR != 0) pack_a(ks, trans_a, A, lda, i0 + mc - mc % MR, mc % MR, p0, kc, abuf.get());
      for (size_t j0 = 0; j0 < N; j0 += NC) {
        const size_t nc = std::min(NC, N - j0);
        if (Bop.h16) pack_b_h16(ks, Bop.h16, Bop.type, ldb, p0, kc, j0, nc, bbuf.get(), wide.get());
        else if (!direct_b) pack_b(ks, trans_b, B, ldb, p0, kc, j0, nc, bbuf.get());
        else if (nc % NR != 0) pack_b(ks, trans_b, B, ldb, p0, kc, j0 + nc - nc % NR, nc % NR, bbuf.get());
        for (size_t ir = 0; ir < mc; ir += MR) {
          const size_t mr = std::min(MR, mc - ir);
          const float* ap = abuf.get() + ir * kc;
          size_t a_rs = 1, a_cs = MR;
          if (direct_a) {
            if (!trans_a) ap = A + (i0 + ir) * lda + p0, a_rs = lda, a_cs = 1;
            else if (mr == MR) ap = A + p0 * lda + i0 + ir, a_rs = 1, a_cs = lda;
            else ap = abuf.get();
          }
          float* crow = C + (i0 + ir) * ldc + j0;
          for (size_t jr = 0; jr < nc; jr += NR) {
            const size_t nr = std::min(NR, nc - jr);
            const float* bp = bbuf.get() + jr * kc;
            size_t b_ks = NR;
            if (direct_b) {
              if (nr == NR) bp = B + p0 * ldb + j0 + jr, b_ks = ldb;
              else bp = bbuf.get();
            }
            ks.micro(kc, ap, a_rs, a_cs, bp, b_ks, crow + jr, ldc, mr, nr, alpha, beta_pass);
          }
        }
      }
    }
  }
}

// C = beta·C (beta == 0: C = 0 without reading it), for K == 0 or alpha == 0 where A and B are not read.
void scale_c(size_t M, size_t N, float beta, float* C, size_t ldc) {
  for (size_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) std::fill(c, c + N, 0.0f);
    else if (beta != 1.0f)
      for (size_t j = 0; j < N; ++j) c[j] *= beta;
  }
}

// Below this many multiply-adds per thread, waking another thread costs more than it saves.
constexpr double kMinMacsPerThread = 1 << 22;

}  // namespace

void sgemm(ThreadPool* pool, bool trans_a, bool trans_b, size_t M, size_t N, size_t K, float alpha, const float* A,
           size_t lda, const float* B, size_t ldb, float beta, float* C, size_t ldc) {
  sgemm_with_kernel(nullptr, pool, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, CancelScope::current());
}

namespace {
void gemm_dispatch(const char* kernel, ThreadPool* pool, bool trans_a, bool trans_b, size_t M, size_t N, size_t K,
                   float alpha, const float* A, size_t lda, const BOperand& B, size_t ldb, float beta, float* C,
                   size_t ldc, const JobControl* ctl) {
  const KernelChoice choice = choose_kernel(kernel);
  if (!choice.spec) throw Error("INVALID_ARGUMENT", choice.error);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const KernelSpec& ks = *choice.spec;

  const double macs = double(M) * double(N) * double(K);
  const size_t threads = pool ? pool->size() : 1;
  // Split the longer side of C (counted in micro-tiles) into one stripe per thread.
  const size_t tiles_m = ceil_div(M, ks.mr), tiles_n = ceil_div(N, ks.nr);
  const bool split_m = tiles_m >= tiles_n;
  size_t parts = std::min<size_t>({threads, split_m ? tiles_m : tiles_n, size_t(macs / kMinMacsPerThread)});
  if (parts <= 1) {
    gemm_serial(ks, M, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ctl);
    if (ctl) ctl->check();
    return;
  }
  const size_t unit = split_m ? ks.mr : ks.nr, extent = split_m ? M : N;
  const size_t stripe = round_up(ceil_div(extent, parts), unit);
  parts = ceil_div(extent, stripe);
  pool->parallel_for(parts, 1, [&](size_t b, size_t e) {
    for (size_t part = b; part < e; ++part) {
      const size_t s0 = part * stripe, len = std::min(stripe, extent - s0);
      if (split_m) {
        const float* a = trans_a ? A + s0 : A + s0 * lda;
        gemm_serial(ks, M, trans_a, trans_b, len, N, K, alpha, a, lda, B, ldb, beta, C + s0 * ldc, ldc, ctl);
      } else {
        const BOperand b = B.plus(trans_b ? s0 * ldb : s0);
        gemm_serial(ks, M, trans_a, trans_b, M, len, K, alpha, A, lda, b, ldb, beta, C + s0, ldc, ctl);
      }
    }
  });
  if (ctl) ctl->check();
}
}  // namespace

void sgemm_with_kernel(const char* kernel, ThreadPool* pool, bool trans_a, bool trans_b, size_t M, size_t N, size_t K,
                       float alpha, const float* A, size_t lda, const float* B, size_t ldb, float beta, float* C,
                       size_t ldc, const JobControl* ctl) {
  gemm_dispatch(kernel, pool, trans_a, trans_b, M, N, K, alpha, A, lda, BOperand{B}, ldb, beta, C, ldc, ctl);
}

void sgemm_bt16(ThreadPool* pool, bool trans_a, size_t M, size_t N, size_t K, float alpha, const float* A, size_t lda,
                const uint16_t* B, Half type, size_t ldb, float beta, float* C, size_t ldc, const char* kernel) {
  gemm_dispatch(kernel, pool, trans_a, true, M, N, K, alpha, A, lda, BOperand{nullptr, B, type}, ldb, beta, C, ldc,
                CancelScope::current());
}

std::string sgemm_kernel_name() {
  const KernelChoice choice = choose_kernel(nullptr);
  return choice.spec ? choice.spec->name : "invalid (" + choice.error + ")";
}

std::vector<std::string> sgemm_supported_kernels() {
  std::vector<std::string> names;
  for (const KernelSpec* s : supported_specs()) names.push_back(s->name);
  return names;
}

}  // namespace ffm
