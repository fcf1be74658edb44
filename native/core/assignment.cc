// Jonker–Volgenant-style dense linear assignment: the phases of Jonker & Volgenant (1987) and the `lap`
// package's dense solver (augmenting row reduction, then shortest augmenting paths), initialised by a row
// then column reduction. The shortest-path phase picks one column at a time (Dijkstra) so that each scanned
// row is one vectorised pass over the columns (assignment_kernels.cc).
//
// Conventions: rows are assigned to columns, rows <= cols (the caller transposes otherwise); costs are
// multiplied by s = +1 (minimise) or -1 (maximise), which is exact. Only column duals v are stored; the
// invariant of every phase is that an assigned row's column minimises its reduced cost c[i][j] - v[j].
#include "core/assignment.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <sstream>

#include "core/assignment_kernels.h"
#include "core/error.h"

namespace ffm {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

template <class T>
class Solver {
 public:
  Solver(JobControl& ctl, const T* C, size_t n, size_t m, bool maximize, const lap::Kernels<T>& k)
      : ctl_(ctl), C_(C), n_(n), m_(m), s_(maximize ? -1.0 : 1.0), k_(k) {}

  // Returns row -> column for every row.
  std::vector<int32_t> solve() {
    x_.assign(n_, -1);
    y_.assign(m_, -1);
    dw_.assign(m_, kInf);
    pred_.assign(m_, -1);
    std::vector<int32_t> free_rows;
    if (n_ == m_ && n_ >= 2) {
      free_rows = reduce_and_match();
      // Two passes, as Jonker & Volgenant recommend: most rows end assigned, cheaply.
      for (int pass = 0; pass < 2 && !free_rows.empty(); ++pass) {
        size_t left = augmenting_row_reduction(free_rows);
        free_rows.resize(left);
        ctl_.progress(double(n_ - free_rows.size()), double(n_));
      }
    } else {
      // Rectangular (or 1×1): shortest augmenting paths from v = 0. Free columns then keep v = 0 and assigned
      // ones v <= 0, the optimality conditions of the rectangular problem.
      v_.assign(m_, 0.0);
      free_rows.resize(n_);
      for (size_t i = 0; i < n_; ++i) free_rows[i] = int32_t(i);
    }
    free_cols_.clear();
    free_pos_.assign(m_, -1);
    for (size_t j = 0; j < m_; ++j) {
      if (y_[j] >= 0) continue;
      free_pos_[j] = int32_t(free_cols_.size());
      free_cols_.push_back(int32_t(j));
    }
    size_t done = n_ - free_rows.size();
    for (int32_t f : free_rows) {
      ctl_.check();
      augment(f);
      ctl_.progress(double(++done), double(n_));
    }
    return x_;
  }

 private:
  const T* row(size_t i) const { return C_ + i * m_; }

  // Initial duals and matching: row reduction u[i] = min_j c[i][j], column reduction
  // v[j] = min_i (c[i][j] - u[i]), then each row in turn takes the first still-free column attaining its
  // minimum reduced cost c[i][j] - v[j]. (JV's own column reduction + reduction transfer leaves 2–3× more
  // work to the later phases on correlation-like matrices; on uniform random ones both are alike.)
  // The three passes over the matrix run on the pool. Returns the free rows.
  std::vector<int32_t> reduce_and_match() {
    std::vector<double> u(n_), zero(m_, 0.0);
    ctl_.pool().parallel_for(n_, 64, [&](size_t b, size_t e) {
      ctl_.check();
      for (size_t i = b; i < e; ++i) {
        lap::Top2 t;
        k_.top2(row(i), s_, zero.data(), m_, &t);
        u[i] = t.a1;
      }
    });
    v_.assign(m_, kInf);
    constexpr size_t kChunk = 512;  // columns per task: their v stays in L1 while the rows stream by
    ctl_.pool().parallel_for((m_ + kChunk - 1) / kChunk, 1, [&](size_t b, size_t e) {
      for (size_t c = b; c < e; ++c) {
        ctl_.check();
        k_.colmin(C_, n_, m_, c * kChunk, std::min(m_, (c + 1) * kChunk), s_, u.data(), v_.data());
      }
    });
    std::vector<lap::Top2> best(n_);
    ctl_.pool().parallel_for(n_, 64, [&](size_t b, size_t e) {
      ctl_.check();
      for (size_t i = b; i < e; ++i) k_.top2(row(i), s_, v_.data(), m_, &best[i]);
    });
    std::vector<int32_t> free_rows;
    for (size_t i = 0; i < n_; ++i) {
      const lap::Top2& t = best[i];
      int64_t j = -1;
      if (y_[t.j1] < 0) {
        j = t.j1;
      } else if (t.j2 >= 0 && t.a2 == t.a1) {
        if (y_[t.j2] < 0) {
          j = t.j2;
        } else {
          // More ties (constant or integer matrices): the next free column at the minimum, if any.
          const T* r = row(i);
          for (size_t k = size_t(t.j2) + 1; k < m_; ++k)
            if (y_[k] < 0 && s_ * double(r[k]) - v_[k] == t.a1) {
              j = int64_t(k);
              break;
            }
        }
      }
      if (j < 0) {
        free_rows.push_back(int32_t(i));
      } else {
        x_[i] = int32_t(j);
        y_[j] = int32_t(i);
      }
    }
    return free_rows;
  }

  // Augmenting row reduction (JV's "augmenting row reduction", as in the lap package): each free row takes
  // its best column, lowering that column's dual to its second best so the displaced row, if any, may find
  // a new column cheaply. Returns how many rows are still free (listed first in free_rows).
  // Iteration bounds: lap's rr < current * n stops the cycling that ties can cause; a budget of kArrBudget
  // iterations per initially free row stops the long chains of tiny dual decrements that near-tied
  // correlation matrices produce (past that point shortest paths finish the job for less: 64 gave the
  // lowest total time at n = 3072–8192 on correlation-like matrices, against 16 and 256).
  static constexpr size_t kArrBudget = 64;
  size_t augmenting_row_reduction(std::vector<int32_t>& free_rows) {
    size_t current = 0, n_free = free_rows.size(), new_free = 0;
    size_t rr = 0;
    const size_t budget = kArrBudget * n_free;
    while (current < n_free) {
      if ((++rr & 255) == 0) ctl_.check();
      int32_t fi = free_rows[current++];
      lap::Top2 t;
      k_.top2(row(size_t(fi)), s_, v_.data(), m_, &t);
      int64_t j1 = t.j1, j2 = t.j2;
      int32_t i0 = y_[j1];
      double v1_new = v_[j1] - (t.a2 - t.a1);
      bool v1_lowers = v1_new < v_[j1];
      if (rr < current * n_ && rr < budget) {
        if (v1_lowers) {
          v_[j1] = v1_new;
        } else if (i0 >= 0 && j2 >= 0) {
          j1 = j2;
          i0 = y_[j2];
        }
        if (i0 >= 0) {
          if (v1_lowers)
            free_rows[--current] = i0;
          else
            free_rows[new_free++] = i0;
        }
      } else if (i0 >= 0) {
        free_rows[new_free++] = i0;
      }
      if (i0 >= 0) x_[i0] = -1;
      x_[fi] = int32_t(j1);
      y_[j1] = fi;
    }
    return new_free;
  }

  // Shortest augmenting path from free row f (Dijkstra over columns), dual update, augmentation.
  void augment(int32_t f) {
    std::fill(dw_.begin(), dw_.end(), kInf);
    scanned_.clear();
    int32_t i = f;
    double h = 0.0;
    int64_t sink;
    double mind;
    for (size_t steps = 1;; ++steps) {
      lap::ScanResult r;
      k_.scan(row(size_t(i)), s_, h, v_.data(), dw_.data(), pred_.data(), i, m_, &r);
      int64_t j = r.arg_all;
      if (j < 0) throw Error("NATIVE_ERROR", "assignment: no augmenting path found (internal error)");
      // A free column at the shortest distance ends the search; preferring it over an assigned column at
      // the same distance keeps tied (e.g. constant) matrices at O(n) scans per row. The free list is short
      // once the initialisation has assigned most rows.
      sink = -1;
      for (int32_t fj : free_cols_)
        if (dw_[fj] == r.min_all && (sink < 0 || fj < sink)) sink = fj;
      if (sink >= 0) {
        mind = dw_[sink];
        break;
      }
      i = y_[j];
      // Distance to row i is the distance to its column j; h shifts row i's reduced costs to that level.
      h = r.min_all - (s_ * double(row(size_t(i))[j]) - v_[j]);
      scanned_.push_back({j, r.min_all, v_[j]});
      v_[j] = -kInf;  // makes every later candidate for column j +inf: never updated again
      dw_[j] = kInf;  // and never chosen again
      if ((steps & 63) == 0) ctl_.check();
    }
    for (const Scanned& sc : scanned_) v_[sc.col] = sc.v + (sc.dist - mind);
    // The sink is assigned from now on: swap-remove it from the free list.
    int32_t pos = free_pos_[sink], last = free_cols_.back();
    free_cols_[pos] = last;
    free_pos_[last] = pos;
    free_cols_.pop_back();
    free_pos_[sink] = -1;
    for (int64_t j = sink;;) {
      int32_t pi = pred_[j];
      y_[j] = pi;
      int32_t prev = x_[pi];
      x_[pi] = int32_t(j);
      if (pi == f) break;
      j = prev;
    }
  }

  struct Scanned {
    int64_t col;
    double dist;  // final shortest distance to the column
    double v;     // its dual before the search
  };

  JobControl& ctl_;
  const T* C_;
  size_t n_, m_;
  double s_;
  lap::Kernels<T> k_;
  std::vector<int32_t> x_, y_, pred_;
  std::vector<int32_t> free_cols_, free_pos_;  // unassigned columns, and each one's index in that list
  std::vector<double> v_, dw_;
  std::vector<Scanned> scanned_;
};

const char* non_finite_name(double x) { return std::isnan(x) ? "NaN" : (x > 0 ? "+Infinity" : "-Infinity"); }

template <class T>
void check_finite(JobControl& ctl, const T* cost, size_t rows, size_t cols) {
  std::atomic<size_t> first_bad{rows};
  ctl.pool().parallel_for(rows, 64, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      const T* r = cost + i * cols;
      bool ok = true;
      for (size_t j = 0; j < cols; ++j) ok &= std::isfinite(r[j]);
      if (!ok) {
        size_t cur = first_bad.load();
        while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {
        }
        return;
      }
    }
  });
  size_t i = first_bad.load();
  if (i == rows) return;
  size_t j = 0;
  while (std::isfinite(cost[i * cols + j])) ++j;
  std::ostringstream msg;
  msg << "the cost matrix has a non-finite entry (" << non_finite_name(double(cost[i * cols + j])) << " at row " << i
      << ", column " << j << "); every cost must be a finite number";
  throw Error("NON_FINITE_INPUT", msg.str());
}

template <class T>
Assignment solve(JobControl& ctl, const T* cost, size_t rows, size_t cols, bool maximize, LapKernel kernel) {
  constexpr size_t kMaxDim = size_t(std::numeric_limits<int32_t>::max());
  if (rows > kMaxDim || cols > kMaxDim)
    throw Error("INVALID_ARGUMENT", "the cost matrix is too large: each dimension must be below 2^31");
  if (!lap::cpu_has(kernel)) throw Error("INVALID_ARGUMENT", "this CPU cannot run the requested assignment kernel");
  Assignment out;
  if (rows == 0 || cols == 0) return out;
  check_finite(ctl, cost, rows, cols);
  lap::Kernels<T> k = lap::kernels_for<T>(kernel);

  std::vector<int32_t> col_of_row(rows, -1);
  if (rows <= cols) {
    col_of_row = Solver<T>(ctl, cost, rows, cols, maximize, k).solve();
  } else {
    // More rows than columns: solve the transpose (columns choose rows), as scipy does.
    std::vector<T> t(rows * cols);
    constexpr size_t B = 64;
    ctl.pool().parallel_for((rows + B - 1) / B, 1, [&](size_t b, size_t e) {
      for (size_t i0 = b * B; i0 < std::min(rows, e * B); i0 += B)
        for (size_t j0 = 0; j0 < cols; j0 += B)
          for (size_t i = i0; i < std::min(rows, i0 + B); ++i)
            for (size_t j = j0; j < std::min(cols, j0 + B); ++j) t[j * rows + i] = cost[i * cols + j];
    });
    std::vector<int32_t> row_of_col = Solver<T>(ctl, t.data(), cols, rows, maximize, k).solve();
    for (size_t j = 0; j < cols; ++j) col_of_row[size_t(row_of_col[j])] = int32_t(j);
  }
  size_t count = std::min(rows, cols);
  out.row_ind.reserve(count);
  out.col_ind.reserve(count);
  for (size_t i = 0; i < rows; ++i) {
    if (col_of_row[i] < 0) continue;
    out.row_ind.push_back(int32_t(i));
    out.col_ind.push_back(col_of_row[i]);
    out.objective += double(cost[i * cols + size_t(col_of_row[i])]);
  }
  ctl.progress(double(count), double(count));
  return out;
}

}  // namespace

bool lap_kernel_supported(LapKernel k) { return lap::cpu_has(k); }

std::string lap_kernel_name(LapKernel k) {
  switch (lap::resolve_kernel(k)) {
    case LapKernel::Avx512:
      return "avx512";
    case LapKernel::Avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

Assignment linear_sum_assignment(JobControl& ctl, const float* cost, size_t rows, size_t cols, bool maximize,
                                 LapKernel kernel) {
  return solve(ctl, cost, rows, cols, maximize, kernel);
}

Assignment linear_sum_assignment(JobControl& ctl, const double* cost, size_t rows, size_t cols, bool maximize,
                                 LapKernel kernel) {
  return solve(ctl, cost, rows, cols, maximize, kernel);
}

}  // namespace ffm
