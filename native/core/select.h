// Greedy column-subset selection for the training-free "select" merge: from P pooled FF hidden units (the
// k·d_ff units of a window's k layers), pick the ones whose activations best reproduce the targets Y (each
// position's original FF output) by least squares — forward stepwise regression with many outputs, run as a
// pivoted Cholesky on the accumulated normal equations so it never touches the token rows again. Blocked
// (select.cc): the trailing matrices are brought up to date by products once per `block` steps, so a step
// costs one read-only pass over the residual targets instead of a pass over the whole factor and a rewrite of
// the targets.
//
// Inputs are ridge_accumulate's sums (core/ridge.h): G = [H 1]ᵀ[H 1] ((p+1)×(p+1)) and C = [H 1]ᵀY ((p+1)×m);
// column p is the constant column (the bias). Columns listed in `forced` are taken first, in order (e.g. p,
// so that every later gain is measured after the intercept); then, while fewer than `count` are taken, the
// column j with the largest drop in residual sum of squares
//     gain_j = ‖C_S[j,:]‖² / (G_S[j,j] + λ)
// where G_S, C_S are G, C with the taken columns projected out (Schur complements) and λ = lambda_rel × the
// mean diagonal of G over the first p columns keeps nearly dependent columns from winning on rounding noise.
// A column whose residual variance has fallen below 1e-10 × its own G[j][j] is never taken.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/job.h"

namespace ffm {

// Returns the taken columns in the order taken (forced ones first). Fewer than `count` only when every
// remaining column is (numerically) in the span of the taken ones. Throws NON_FINITE_INPUT for NaN/Inf,
// INVALID_ARGUMENT for a forced index out of range or repeated, or count > p + 1.
// Memory: working copies of G's lower triangle and of C besides the inputs, shrunk in place as columns are taken.
// `block`: steps between updates of the trailing matrices (select.cc); it changes only rounding, and tests
// set it small to cross many block ends and compactions at small sizes.
std::vector<int32_t> greedy_select(JobControl& ctl, const double* G, const double* C, size_t p, size_t m,
                                   const std::vector<int32_t>& forced, size_t count, double lambda_rel,
                                   size_t block = 96);

}  // namespace ffm
