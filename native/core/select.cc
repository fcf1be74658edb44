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

  // Lazy pivoted Cholesky: column t of the factor is stored as row t of `L`, so computing a new one is one
  // pass over the previous ones: l_t = (G[:,j] − Σ_s L_s L_s[j]) / √d_j. d holds the residual diagonal
  // G_S[i][i]; R holds C_S (targets with the taken columns projected out).
  //
  // The pass is bound by memory traffic (it reads all of L every step), and a taken column's entries are
  // never read again, so rows of L hold only the columns still in play: `cols` lists them (a row's entry a
  // is column cols[a]; pos[i] is column i's place) and the layout is compacted once an eighth of it is
  // taken. Every live entry is computed as without compaction, bit for bit.
  std::vector<size_t> cols(n), pos(n);
  for (size_t i = 0; i < n; ++i) cols[i] = pos[i] = i;
  std::vector<double> L;
  size_t width = n;  // entries per row of L
  size_t dead = 0;   // of them, columns taken since the layout was last compacted
  std::vector<double> d(n), R(C, C + n * m);
  for (size_t i = 0; i < n; ++i) d[i] = G[i * n + i];
  std::vector<int32_t> out;
  out.reserve(count);
  ThreadPool& pool = ctl.pool();

  // gain_i = |R_i|² / (d_i + λ): the drop in residual sum of squares were column i taken next; -1 for a
  // column taken or already in the span. From |R_i|² (rr) kept up to date in the update pass below, so R is
  // read once per step, not twice.
  std::vector<double> rr(n);
  for (size_t i = 0; i < n; ++i) {
    const double* r = R.data() + i * m;
    double s = 0;
    for (size_t o = 0; o < m; ++o) s += r[o] * r[o];
    rr[i] = s;
  }
  auto gain_of = [&](size_t i) {
    if (taken[i] || !(d[i] > 1e-10 * G[i * n + i]) || !(d[i] > 0)) return -1.0;
    return rr[i] / (d[i] + (i < p ? lambda : 0.0));
  };

  while (out.size() < count) {
    ctl.check();
    const size_t t = out.size();
    size_t j = n;
    if (t < forced.size()) {
      j = size_t(forced[t]);
      if (!(d[j] > 1e-10 * G[j * n + j]) || !(d[j] > 0)) break;  // a forced column already in the span
    } else {
      double best = -1;
      for (size_t i = 0; i < n; ++i) {
        const double g = gain_of(i);
        if (g > best) best = g, j = i;
      }
      if (j == n) break;  // nothing left outside the span
    }
    taken[j] = 1;
    out.push_back(int32_t(j));
    if (8 * ++dead > width) {  // an eighth of the layout is taken: keep only the live columns
      std::vector<size_t> live;
      for (size_t i : cols)
        if (!taken[i] || i == j) live.push_back(i);
      std::vector<double> packed(t * live.size());
      for (size_t s = 0; s < t; ++s)
        for (size_t a = 0; a < live.size(); ++a) packed[s * live.size() + a] = L[s * width + pos[live[a]]];
      for (size_t a = 0; a < live.size(); ++a) pos[live[a]] = a;
      cols = std::move(live);
      L = std::move(packed);
      width = cols.size();
      dead = 1;  // j, which this step still needs
    }
    L.resize((t + 1) * width);
    double* lt = L.data() + t * width;
    const double root = std::sqrt(d[j]);
    const double* rj = R.data() + j * m;
    std::vector<double> z(rj, rj + m);  // the coefficient of the new orthonormal direction, per output
    for (size_t o = 0; o < m; ++o) z[o] /= root;
    std::vector<double> lj(t);  // the taken factors' entries at j
    for (size_t s = 0; s < t; ++s) lj[s] = L[s * width + pos[j]];
    pool.parallel_for(width, 256, [&](size_t b, size_t e) {
      // rows of L are contiguous, so the update runs as t axpys over this block of entries; entries of
      // columns taken since the last compaction are computed too (cheaper than breaking the axpys) and unused
      for (size_t a = b; a < e; ++a) lt[a] = G[j * n + cols[a]];  // G is symmetric: row j
      for (size_t s = 0; s < t; ++s) {
        const double c = lj[s];
        const double* ls = L.data() + s * width;
        for (size_t a = b; a < e; ++a) lt[a] -= c * ls[a];
      }
      for (size_t a = b; a < e; ++a) {
        const size_t i = cols[a];
        const double v = lt[a] / root;
        lt[a] = v;
        if (taken[i] && i != j) continue;
        d[i] -= v * v;
        double* r = R.data() + i * m;
        double sq = 0;
        for (size_t o = 0; o < m; ++o) {
          r[o] -= v * z[o];
          sq += r[o] * r[o];
        }
        rr[i] = sq;
      }
    });
    d[j] = 0;
    ctl.progress(double(out.size()), double(count));
  }
  return out;
}

}  // namespace ffm
