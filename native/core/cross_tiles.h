// The heavy part of the correlation accumulator: acc[a, b] += Σ_r x[r, a]·y[r, b] over a block of rows,
// computed one output tile at a time on the sgemm micro-kernels (core/gemm_kernels.h).
//
// Why not sgemm into a full fp32 product and then add it into acc: at LLM widths (d_ff 11008–14336) that
// product is 0.5–0.8 GB, written and read back through DRAM once per block, on top of the fp64 accumulator.
// Here each worker owns one MT×NT tile of the output: it runs every row of the block through the micro-kernel
// into a cache-resident fp32 tile, then folds the tile into acc while it is still hot. No full-size fp32
// buffer exists, and the scratch per worker is a few hundred kB.
//
// The arithmetic is sgemm's with 256-row K slices and beta = 1 between slices: each element sums ≤ 256
// products in fp32 per micro-kernel call, the slices of a block chain in fp32, and the block's partial sum is
// added to acc in fp64. So the fp32 rounding error is bounded by one block's length.
#pragma once
#include <cstddef>

#include "core/job.h"

namespace ffm {

// acc[a·ld_acc + b] += Σ_{r < rows} x[r·ldx + a]·y[r·ldy + b] for a < dx, b < dy. x is rows × dx and y is
// rows × dy, row-major (leading dimensions ldx ≥ dx, ldy ≥ dy). Call it with rows ≤ the accumulator's block
// length: the fp32 partial sums are folded into acc once, at the end. Runs on ctl's pool (tiles spread over
// the threads; scratch per thread ≈ 240 · rows floats); a cancel stops it between tiles and throws Cancelled with acc partly updated.
void accumulate_cross_tiled(JobControl& ctl, const float* x, size_t ldx, size_t dx, const float* y, size_t ldy,
                            size_t dy, size_t rows, double* acc, size_t ld_acc);

}  // namespace ffm
