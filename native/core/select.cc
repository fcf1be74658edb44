#include "core/select.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/dgemm_sub.h"
#include "core/error.h"
#include "core/large_buffer.h"

namespace ffm {

namespace {

constexpr size_t kRows = 32;  // rows per task of the block-end products

typedef double v4d __attribute__((vector_size(32)));

// Σ a[o]·b[o] in sixteen interleaved partial sums, added up in a fixed order at the end. A single running
// sum waits on each add's latency (four cycles), which bound the step's pass over Rb instead of memory did
// (95 → 77 s on benchmarks/select.ts at 7B width). The order depends on n alone, never on threads.
double dot(const double* a, const double* b, size_t n) {
  v4d acc[4] = {{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}};
  size_t o = 0;
  for (; o + 16 <= n; o += 16)
    for (size_t k = 0; k < 4; ++k) {
      v4d x, y;
      std::memcpy(&x, a + o + 4 * k, sizeof x);
      std::memcpy(&y, b + o + 4 * k, sizeof y);
      acc[k] += x * y;
    }
  const v4d v = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  double s = (v[0] + v[1]) + (v[2] + v[3]);
  for (; o < n; ++o) s += a[o] * b[o];
  return s;
}

// Where entry (a, c), c ≤ a, of a symmetric matrix's lower triangle lives when it is stored in row blocks of
// kRows rows, each row as wide as its block's last row (block k: rows [kRows·k, kRows·(k+1)), width
// min(nl, kRows·(k+1))): every block is a rectangle the block-end product writes as one, and the whole takes
// about nl²/2 entries instead of nl². A block's start does not depend on nl (all blocks but the last are
// full), so shrinking nl moves every entry to a lower address: compaction can copy in place, in order.
struct Packed {
  size_t nl;
  size_t width(size_t k) const { return std::min(nl, kRows * (k + 1)); }
  size_t start(size_t k) const { return kRows * kRows * (k * (k + 1) / 2); }
  size_t at(size_t a, size_t c) const { return start(a / kRows) + (a % kRows) * width(a / kRows) + c; }
  size_t size() const { return nl ? at(nl - 1, 0) + nl : 0; }
};

}  // namespace

std::vector<int32_t> greedy_select(JobControl& ctl, const double* G, const double* C, size_t p, size_t m,
                                   const std::vector<int32_t>& forced, size_t count, double lambda_rel, size_t block) {
  const size_t n = p + 1;  // columns, the constant one included
  if (count > n) throw Error("INVALID_ARGUMENT", "select: count exceeds the number of columns");
  if (!(lambda_rel >= 0)) throw Error("INVALID_ARGUMENT", "select: the ridge factor must be ≥ 0");
  if (block == 0) throw Error("INVALID_ARGUMENT", "select: the block width must be ≥ 1");
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

  // Right-looking pivoted Cholesky in blocks of `block` steps, the way LAPACK's dpstrf blocks it.
  //
  // A step needs, for every column i still in play, the new factor entry l[i] (to update the residual
  // diagonal d[i] = G_S[i][i]) and the change of |R_i|² (R = C_S, the targets with the taken columns
  // projected out). Computing l from all earlier factor columns reads the whole factor every step, and
  // updating R reads and writes all of it: at Llama-2-7B width (13,760 pooled units, 4,096 outputs) that was
  // ~1.5 GB of memory traffic per unit taken. Instead, S (the Schur complement of G) and Rb (R) are brought up
  // to date once per block, by products that run at arithmetic speed (core/dgemm_sub.h); inside a block a step
  // reads one row of S and of Rb, the block's few factor columns, and makes one pass over Rb read-only:
  //   l_q  = (S[j,:] − Σ_{r<q} l_r[j]·l_r) / √d_j           (r: the block's earlier steps)
  //   z_q  = (Rb[j,:] − Σ_{r<q} l_r[j]·z_r) / √d_j          (the taken direction's coefficients per output)
  //   R_i·z_q = Rb[i,:]·z_q − Σ_{r<q} l_r[i]·(z_r·z_q)
  //   d_i −= l_q[i]²,   |R_i|² −= 2·l_q[i]·(R_i·z_q) − l_q[i]²·|z_q|²
  // and at the block's end S −= Lᵀ·L (lower triangle), Rb −= Lᵀ·Z, and |R_i|² is recomputed from Rb so that
  // rounding in the running update never carries past a block.
  //
  // Rows of S and Rb hold only the columns still in play: `cols` lists them (entry a is column cols[a]; pos[i]
  // is column i's place), compacted at a block's end once an eighth of them is taken. d, rr and taken are
  // indexed by column. S holds its lower triangle only (Packed): entry (a, b) is at S[at(max, min)].
  std::vector<size_t> cols(n), pos(n);
  for (size_t i = 0; i < n; ++i) cols[i] = pos[i] = i;
  size_t nl = n;
  Packed pk{nl};
  LargeVector<double> S(pk.size()), Rb(C, C + n * m);  // 0.5–0.8 GB each at 7B width
  for (size_t a = 0; a < n; ++a) std::copy(G + a * n, G + a * n + a + 1, S.begin() + pk.at(a, 0));
  std::vector<double> d(n), gdiag(n), rr(n);
  for (size_t i = 0; i < n; ++i) d[i] = gdiag[i] = G[i * n + i];
  ThreadPool& pool = ctl.pool();
  auto row_norms = [&] {
    pool.parallel_for(nl, 256, [&](size_t b, size_t e) {
      for (size_t a = b; a < e; ++a) {
        const double* r = Rb.data() + a * m;
        rr[cols[a]] = dot(r, r, m);
      }
    });
  };
  row_norms();
  // gain_i = |R_i|² / (d_i + λ): the drop in residual sum of squares were column i taken next; -1 for a
  // column taken or already in the span
  auto gain_of = [&](size_t i) {
    if (taken[i] || !(d[i] > 1e-10 * gdiag[i]) || !(d[i] > 0)) return -1.0;
    return rr[i] / (d[i] + (i < p ? lambda : 0.0));
  };

  const DgemmSub sub = dgemm_sub();
  // the block's factor columns (q × nl) and target coefficients (q × m); per step, z_r·z_q and l_r[j]
  std::vector<double> Lb, Zb, zz(block), lj(block);
  std::vector<int32_t> out;
  out.reserve(count);
  size_t dead = 0;  // columns taken since the layout was last compacted
  bool done = false;
  while (!done && out.size() < count) {
    Lb.assign(block * nl, 0.0);
    Zb.assign(block * m, 0.0);
    size_t q = 0;
    for (; q < block && out.size() < count; ++q) {
      ctl.check();
      const size_t t = out.size();
      size_t j = n;
      if (t < forced.size()) {
        j = size_t(forced[t]);
        if (!(d[j] > 1e-10 * gdiag[j]) || !(d[j] > 0)) {  // a forced column already in the span
          done = true;
          break;
        }
      } else {
        double best = -1;
        for (size_t a = 0; a < nl; ++a) {
          const double g = gain_of(cols[a]);
          if (g > best) best = g, j = cols[a];
        }
        if (j == n) {  // nothing left outside the span
          done = true;
          break;
        }
      }
      taken[j] = 1;
      ++dead;
      out.push_back(int32_t(j));
      const size_t aj = pos[j];
      const double root = std::sqrt(d[j]);
      double* lq = Lb.data() + q * nl;
      double* zq = Zb.data() + q * m;
      for (size_t r = 0; r < q; ++r) lj[r] = Lb[r * nl + aj];
      for (size_t o = 0; o < m; ++o) {
        double v = Rb[aj * m + o];
        for (size_t r = 0; r < q; ++r) v -= lj[r] * Zb[r * m + o];
        zq[o] = v / root;
      }
      const double zqq = dot(zq, zq, m);
      for (size_t r = 0; r < q; ++r) zz[r] = dot(Zb.data() + r * m, zq, m);
      const double* srow = S.data() + pk.at(aj, 0);  // S[j, a] for a ≤ j; past j it is S[a, j]
      pool.parallel_for(nl, 256, [&](size_t b, size_t e) {
        for (size_t a = b; a < e; ++a) {
          const size_t i = cols[a];
          if (taken[i]) continue;  // j included: its entries are never read again (lq[aj] stays 0)
          double l = a <= aj ? srow[a] : S[pk.at(a, aj)];
          for (size_t r = 0; r < q; ++r) l -= lj[r] * Lb[r * nl + a];
          l /= root;
          lq[a] = l;
          double w = dot(Rb.data() + a * m, zq, m);
          for (size_t r = 0; r < q; ++r) w -= Lb[r * nl + a] * zz[r];
          d[i] -= l * l;
          rr[i] = std::max(0.0, rr[i] - 2 * l * w + l * l * zqq);
        }
      });
      d[j] = 0;
      ctl.progress(double(out.size()), double(count));
    }
    if (done || out.size() >= count) break;  // the factor is not needed past the last step
    // The block's end: bring S and Rb up to date (rows of taken columns too: cheaper than skipping them in the
    // tiles, and dropped at the next compaction). A task is one of S's row blocks, rows [r0, r1) × columns
    // 0 … r1 − 1; the few right of its diagonal are stored and never read.
    const size_t tasks = (nl + kRows - 1) / kRows;
    pool.parallel_for(tasks, 1, [&](size_t b, size_t e) {
      for (size_t t = b; t < e; ++t) {
        const size_t k = tasks - 1 - t;  // the longest rows first
        const size_t r0 = k * kRows, r1 = std::min(nl, r0 + kRows);
        sub(r1 - r0, r1, q, Lb.data() + r0, 1, nl, Lb.data(), nl, S.data() + pk.start(k), r1);
        sub(r1 - r0, m, q, Lb.data() + r0, 1, nl, Zb.data(), m, Rb.data() + r0 * m, m);
      }
    });
    if (8 * dead > nl) {
      // keep only the live columns; every destination precedes its source, so the copies run in place
      std::vector<size_t> live;
      for (size_t i : cols)
        if (!taken[i]) live.push_back(i);
      const Packed to{live.size()};
      for (size_t a = 0; a < to.nl; ++a) {
        const size_t from = pos[live[a]];
        double* dst = S.data() + to.at(a, 0);
        const double* src = S.data() + pk.at(from, 0);
        for (size_t c = 0; c <= a; ++c) dst[c] = src[pos[live[c]]];
        if (from != a) std::copy(Rb.begin() + from * m, Rb.begin() + (from + 1) * m, Rb.begin() + a * m);
      }
      for (size_t a = 0; a < to.nl; ++a) pos[live[a]] = a;
      cols = std::move(live);
      nl = to.nl;
      pk = to;
      S.resize(pk.size());  // capacity kept: a shrink would copy, and the first block set the peak anyway
      Rb.resize(nl * m);
      dead = 0;
    }
    row_norms();
  }
  return out;
}

}  // namespace ffm
