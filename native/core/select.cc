#include "core/select.h"

#include <cmath>
#include <string>

#include "core/error.h"

namespace ffm {

std::vector<int32_t> greedy_select(JobControl& ctl, const double* G, const double* C, size_t p, size_t m,
                                   const std::vector<int32_t>& forced, size_t count, double lambda_rel) {
  const size_t n = p + 1;  // columns, the constant one included
  if (count > n) throw Error("INVALID_ARGUMENT", "select: count exceeds the number of columns");
  if (!(lambda_rel >= 0)) throw Error("INVALID_ARGUMENT", "select: the ridge factor must be ≥ 0");
  for (size_t i = 0; i < n * n; ++i)
    if (!std::isfinite(G[i])) throw Error("NON_FINITE_INPUT", "select: the accumulated Gram matrix holds NaN or Inf");
  for (size_t i = 0; i < n * m; ++i)
    if (!std::isfinite(C[i])) throw Error("NON_FINITE_INPUT", "select: the accumulated targets hold NaN or Inf");
  std::vector<char> taken(n, 0);
  for (int32_t f : forced) {
    if (f < 0 || size_t(f) >= n || taken[size_t(f)])
      throw Error("INVALID_ARGUMENT", "select: a forced column is out of range or repeated");
    taken[size_t(f)] = 1;
  }
  std::fill(taken.begin(), taken.end(), 0);

  double mean_diag = 0;
  for (size_t i = 0; i < p; ++i) mean_diag += G[i * n + i];
  const double lambda = p ? lambda_rel * mean_diag / double(p) : 0.0;

  // Lazy pivoted Cholesky: column t of the factor is stored as row t of `L` (n values), so computing a new
  // one is one pass over the previous ones: l_t = (G[:,j] − Σ_s L_s L_s[j]) / √d_j. d holds the residual
  // diagonal G_S[i][i]; R holds C_S (targets with the taken columns projected out).
  std::vector<double> L;
  L.reserve(std::min(count, n) * n);
  std::vector<double> d(n), R(C, C + n * m), gain(n);
  for (size_t i = 0; i < n; ++i) d[i] = G[i * n + i];
  std::vector<int32_t> out;
  out.reserve(count);
  ThreadPool& pool = ctl.pool();

  while (out.size() < count) {
    ctl.check();
    const size_t t = out.size();
    size_t j = n;
    if (t < forced.size()) {
      j = size_t(forced[t]);
      if (!(d[j] > 1e-10 * G[j * n + j]) || !(d[j] > 0)) break;  // a forced column already in the span
    } else {
      pool.parallel_for(n, 64, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) {
          if (taken[i] || !(d[i] > 1e-10 * G[i * n + i]) || !(d[i] > 0)) {
            gain[i] = -1;
            continue;
          }
          const double* r = R.data() + i * m;
          double s = 0;
          for (size_t o = 0; o < m; ++o) s += r[o] * r[o];
          gain[i] = s / (d[i] + (i < p ? lambda : 0.0));
        }
      });
      double best = -1;
      for (size_t i = 0; i < n; ++i)
        if (gain[i] > best) best = gain[i], j = i;
      if (j == n) break;  // nothing left outside the span
    }
    taken[j] = 1;
    out.push_back(int32_t(j));
    L.resize((t + 1) * n);
    double* lt = L.data() + t * n;
    const double root = std::sqrt(d[j]);
    const double* rj = R.data() + j * m;
    std::vector<double> z(rj, rj + m);  // the coefficient of the new orthonormal direction, per output
    for (size_t o = 0; o < m; ++o) z[o] /= root;
    std::vector<double> lj(t);  // the taken factors' entries at j
    for (size_t s = 0; s < t; ++s) lj[s] = L[s * n + j];
    pool.parallel_for(n, 256, [&](size_t b, size_t e) {
      // rows of L are contiguous, so the update runs as t axpys over this block of columns
      for (size_t i = b; i < e; ++i) lt[i] = G[j * n + i];  // G is symmetric: row j, contiguous
      for (size_t s = 0; s < t; ++s) {
        const double c = lj[s];
        const double* ls = L.data() + s * n;
        for (size_t i = b; i < e; ++i) lt[i] -= c * ls[i];
      }
      for (size_t i = b; i < e; ++i) {
        const double v = lt[i] / root;
        lt[i] = v;
        d[i] -= v * v;
        double* r = R.data() + i * m;
        for (size_t o = 0; o < m; ++o) r[o] -= v * z[o];
      }
    });
    d[j] = 0;
    ctl.progress(double(out.size()), double(count));
  }
  return out;
}

}  // namespace ffm
