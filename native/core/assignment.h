// Exact dense linear assignment (the linear sum assignment problem), with the semantics of
// scipy.optimize.linear_sum_assignment: for an rows×cols cost matrix, pick min(rows, cols) entries, no two
// in the same row or column, minimising (or maximising) their sum.
//
// Algorithm (square): Jonker–Volgenant style — row then column reduction with a greedy matching on the
// zero reduced costs, augmenting row reduction (twice, with a bounded iteration budget), then shortest
// augmenting paths (Dijkstra over columns, one vectorised pass per scanned row). Rectangular matrices are
// transposed so that rows <= cols and solved by shortest augmenting paths from zero column duals (free
// columns then keep dual 0, which is what makes the rectangular optimum exact). Dual variables and path
// lengths are double; the input may be float32 or float64 and is read in place. The initial passes over
// the matrix run on the job's thread pool; the path searches are sequential (one scan is ~1 µs of work,
// below the cost of a fork-join).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/job.h"

namespace ffm {

struct Assignment {
  // Matched pairs (row_ind[k], col_ind[k]), k < min(rows, cols); row_ind is strictly increasing.
  std::vector<int32_t> row_ind;
  std::vector<int32_t> col_ind;
  // Sum of cost[row_ind[k], col_ind[k]] over k, accumulated in double from the input values.
  double objective = 0.0;
};

// Which inner-loop implementation to use. Every kernel does the same double arithmetic in the same order
// and breaks ties the same way (smallest column index), so all of them return the identical assignment.
enum class LapKernel { Auto, Scalar, Avx2, Avx512 };

bool lap_kernel_supported(LapKernel k);
// The kernel Auto resolves to on this CPU: "avx512", "avx2" or "scalar".
std::string lap_kernel_name(LapKernel k = LapKernel::Auto);

// cost is row-major rows×cols. Throws Error("NON_FINITE_INPUT") on NaN/±Inf, Error("INVALID_ARGUMENT")
// when a dimension exceeds INT32_MAX, Cancelled when ctl is cancelled. Progress: rows assigned / min(rows, cols).
Assignment linear_sum_assignment(JobControl& ctl, const float* cost, size_t rows, size_t cols, bool maximize,
                                 LapKernel kernel = LapKernel::Auto);
Assignment linear_sum_assignment(JobControl& ctl, const double* cost, size_t rows, size_t cols, bool maximize,
                                 LapKernel kernel = LapKernel::Auto);

}  // namespace ffm
