// Ridge least squares for the training-free refit: find X minimising Σ‖[h 1]·X − y‖² + λ‖X_w‖² from
// streamed rows, where h is a merged FF's hidden activation (p values) and y the original FF's output
// (m values). The normal equations are accumulated in double precision from float sgemm products of
// row blocks, then solved once by Cholesky.
//
// Layouts (row-major): G is (p+1)×(p+1), C is (p+1)×m, X is (p+1)×m; row p of each belongs to the bias
// column of ones. The bias is not penalised.
#pragma once
#include <cstddef>

#include "core/job.h"

namespace ffm {

// Throws Error("NON_FINITE_INPUT") naming the first NaN/±Inf of H (n×p) or Y (n×m), rows counted from row0.
void ridge_check_finite(JobControl& ctl, const float* H, size_t n, size_t p, const float* Y, size_t m, size_t row0 = 0);

// G += [H 1]ᵀ[H 1], C += [H 1]ᵀ Y for H n×p and Y n×m (float). Products of blocks of rows run through
// sgemm in float; blocks are summed in double so long token streams do not lose precision. Non-finite H or Y
// is refused (ridge_check_finite) before any sum changes; an abort between row blocks leaves part of the
// rows summed (the caller's sums are then unusable: binding/ridge_binding.cc marks them).
void ridge_accumulate(JobControl& ctl, const float* H, size_t n, size_t p, const float* Y, size_t m, double* G,
                      double* C, size_t row0 = 0);

// Solves (G + λ·diag(1..1,0)) X = C with λ = lambda_rel × mean(G[i][i], i < p), or λ = 1 when that mean is 0
// and lambda_rel > 0 (every unit dead: W = 0, the bias the targets' mean). Throws
// Error("SINGULAR_MATRIX") if the regularised system is not positive definite (e.g. λ = 0 and dead units),
// Error("NON_FINITE_INPUT") if G or C holds NaN/Inf (sums that overflowed float32).
void ridge_solve(JobControl& ctl, const double* G, const double* C, size_t p, size_t m, double lambda_rel, double* X);

}  // namespace ffm
