// Where a float block first holds NaN or ±Inf, for the refusals of inputs that would poison sums (the ridge
// and correlation accumulators' addFF): one vectorisable pass, the exact spot looked for only on failure.
#pragma once
#include <cstddef>
#include <string>

#include "core/job.h"

namespace ffm {

// The first NaN or ±Inf of an n×w float block (row-major), as "NaN at row r, <column> c" with rows counted
// from row0; "" when every value is finite.
std::string first_non_finite(JobControl& ctl, const float* x, size_t n, size_t w, const char* column, size_t row0 = 0);

// Throws Error(code, "<what> hold NaN at row r, <column> c<tail>") at the block's first NaN or ±Inf.
void refuse_non_finite(JobControl& ctl, const float* x, size_t n, size_t w, const char* code, const std::string& what,
                       const char* column, const char* tail, size_t row0 = 0);

}  // namespace ffm
