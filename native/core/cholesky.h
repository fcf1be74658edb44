// Blocked dense Cholesky factorisation and triangular solves in double, for the normal equations of the
// training-free fits (core/ridge.h). At Llama-2-7B width the system has 11,008 unknowns and 4,096 right-hand
// sides: 4.4e11 flops to factor and 1e12 to substitute. Row-by-row (Crout) code streams the whole factor
// from memory for every column it finishes (135 s a solve on two cores); here every product runs through
// register tiles on cache-sized blocks, so the solve is bound by arithmetic instead.
//
// Deterministic: each entry's partial sums run in a fixed order set by the block sizes alone, never by the
// thread count. CPUs with AVX2 and FMA run fused multiply-adds, so their last bits differ from the baseline's.
#pragma once
#include <cstddef>

#include "core/job.h"

namespace ffm {

// In place: the lower triangle of A (n×n, row-major) becomes L with A = L·Lᵀ. The strict upper triangle is
// used as scratch. Throws Error("SINGULAR_MATRIX", singular_message) when a pivot is not positive.
// Progress is reported as [progress_from, progress_to) of `progress_total`.
void cholesky_factor(JobControl& ctl, double* A, size_t n, const char* singular_message, double progress_from,
                     double progress_to, double progress_total);

// B (n×m, row-major) := (L·Lᵀ)⁻¹ B for the factor L of cholesky_factor. Progress as above.
void cholesky_solve(JobControl& ctl, const double* L, size_t n, double* B, size_t m, double progress_from,
                    double progress_to, double progress_total);

}  // namespace ffm
