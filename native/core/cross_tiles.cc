#include "core/cross_tiles.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_kernels.h"
#include "core/thread_pool.h"

namespace ffm {
namespace {

using gemm_detail::aligned_floats;
using gemm_detail::AlignedFloats;
using gemm_detail::KernelSpec;

// The micro-kernel sgemm would use (FFMERGE_GEMM_KERNEL or the best this CPU runs), so the two paths agree.
const KernelSpec& kernel() {
  const std::string name = sgemm_kernel_name();
#ifdef FFM_GEMM_X86
  if (name == "avx512") return gemm_detail::avx512_kernel();
  if (name == "avx2") return gemm_detail::avx2_kernel();
#endif
  if (name == "portable") return gemm_detail::portable_kernel();
  throw Error("INVALID_ARGUMENT", "no GEMM kernel for the correlation tiles: " + name);
}

// Rows per micro-kernel call: the depth sgemm uses (KC = 256 for every kernel), so each call sums at most
// this many products in fp32 and the results equal the sgemm path's.
constexpr size_t kSliceRows = 256;
// Output tile, about kTileM × kTileN (rounded to whole micro-tiles): the fp32 tile and one packed 256-row
// slice of B (~0.5 MB) stay in a core's L2; the stripe's packed A (kTileM × block rows, ~2 MB at 2048 rows)
// streams from L3.
constexpr size_t kTileM = 240, kTileN = 256;

size_t round_up(size_t a, size_t m) { return (a + m - 1) / m * m; }

// Packs src[k·ld + c0 .. c0 + w] for k < kc into ceil(w/P)-panels of kc×P floats (zero past w): the layout
// the micro-kernel reads both operands in (A with a_cs = MR, B with b_ks = NR). Both operands are row-major
// rows × width here, so A (used transposed) and B pack the same way, only with a different panel width.
void pack_panels(const float* src, size_t ld, size_t kc, size_t c0, size_t w, size_t P, float* dst) {
  for (size_t p0 = 0; p0 < w; p0 += P, dst += P * kc) {
    const size_t n = std::min(P, w - p0);
    const float* s = src + c0 + p0;
    for (size_t k = 0; k < kc; ++k, s += ld) {
      float* d = dst + k * P;
      std::memcpy(d, s, n * sizeof(float));
      for (size_t c = n; c < P; ++c) d[c] = 0.0f;
    }
  }
}

}  // namespace

void accumulate_cross_tiled(JobControl& ctl, const float* x, size_t ldx, size_t dx, const float* y, size_t ldy,
                            size_t dy, size_t rows, double* acc, size_t ld_acc) {
  if (dx == 0 || dy == 0 || rows == 0) return;
  const KernelSpec& ks = kernel();
  const size_t MR = ks.mr, NR = ks.nr;
  // Tiles start at multiples of MR (and NR): an edge micro-tile then has the same live rows as in sgemm,
  // whose kernels pick their summation order by the live row count.
  const size_t MT = std::min(round_up(kTileM, MR), round_up(dx, MR));
  const size_t NT = std::min(round_up(kTileN, NR), round_up(dy, NR));
  const size_t stripes = (dx + MT - 1) / MT;
  const size_t kc_max = std::min(kSliceRows, rows);
  // One task = one stripe of MT output rows. Its A operand (x's MT columns, every row of the block) is packed
  // once and reused by every tile of the stripe; B is packed per tile and slice (1/MT of the multiply-adds).
  ctl.pool().parallel_for(stripes, 1, [&](size_t s0, size_t s1) {
    AlignedFloats abuf = aligned_floats(MT * rows), bbuf = aligned_floats(NT * kc_max), tile = aligned_floats(MT * NT);
    for (size_t s = s0; s < s1; ++s) {
      if (ctl.cancelled()) return;  // between stripes; turned into Cancelled below
      const size_t i0 = s * MT, mt = std::min(MT, dx - i0), mt_full = round_up(mt, MR);
      // slice r0's panels sit at r0 · mt_full (every earlier slice is a full 256 rows)
      for (size_t r0 = 0; r0 < rows; r0 += kSliceRows)
        pack_panels(x + r0 * ldx, ldx, std::min(kSliceRows, rows - r0), i0, mt, MR, abuf.get() + r0 * mt_full);
      for (size_t j0 = 0; j0 < dy; j0 += NT) {
        if (ctl.cancelled()) return;
        const size_t nt = std::min(NT, dy - j0);
        for (size_t r0 = 0; r0 < rows; r0 += kSliceRows) {
          const size_t kc = std::min(kSliceRows, rows - r0);
          pack_panels(y + r0 * ldy, ldy, kc, j0, nt, NR, bbuf.get());
          const float beta = r0 == 0 ? 0.0f : 1.0f;  // the slices of the block chain in fp32
          for (size_t ir = 0; ir < mt; ir += MR) {
            const size_t mr = std::min(MR, mt - ir);
            const float* ap = abuf.get() + r0 * mt_full + ir * kc;
            for (size_t jr = 0; jr < nt; jr += NR)
              ks.micro(kc, ap, 1, MR, bbuf.get() + jr * kc, NR, tile.get() + ir * NT + jr, NT, mr,
                       std::min(NR, nt - jr), 1.0f, beta);
          }
        }
        // Fold while the tile is still in cache: the only fp64 work, once per block.
        for (size_t i = 0; i < mt; ++i) {
          double* a = acc + (i0 + i) * ld_acc + j0;
          const float* c = tile.get() + i * NT;
          for (size_t j = 0; j < nt; ++j) a[j] += c[j];
        }
      }
    }
  });
  ctl.check();
}

}  // namespace ffm
