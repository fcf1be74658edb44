#include "core/correlation.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/cross_tiles.h"

#ifdef FFMERGE_HAVE_CUDA
#include "cuda/correlation_cuda.h"
#else
namespace ffm::cuda {
class PairProducts {};  // the CPU build never creates one; complete so unique_ptr can be destroyed
}  // namespace ffm::cuda
#endif

namespace ffm {

namespace {
// Columns per task when a pass runs over the units of a layer: enough contiguous floats per row to stream.
constexpr size_t kColumnGrain = 64;
}  // namespace

CorrelationAccumulator::CorrelationAccumulator(std::vector<size_t> dims) : dims_(std::move(dims)) {
  if (dims_.empty()) throw Error("INVALID_ARGUMENT", "a correlation accumulator needs at least one layer width");
  for (size_t l = 0; l < dims_.size(); ++l)
    if (dims_[l] == 0) throw Error("INVALID_ARGUMENT", "layer " + std::to_string(l) + " has width 0");
  shift_.resize(dims_.size());
  scale_.assign(dims_.size(), 1.0f);
  block_sum_.resize(dims_.size());
  block_sumsq_.resize(dims_.size());
  shifted_.resize(dims_.size());
}

CorrelationAccumulator::CorrelationAccumulator(std::vector<size_t> dims, std::vector<std::pair<int, int>> pairs,
                                               CorrelationBackend backend)
    : CorrelationAccumulator(std::move(dims)) {
  if (pairs.empty()) throw Error("INVALID_ARGUMENT", "a correlation accumulator needs at least one layer pair");
  for (auto [i, j] : pairs) add_pair(i, j);
#ifdef FFMERGE_HAVE_CUDA
  if (backend == CorrelationBackend::kAuto && cuda::available(nullptr, nullptr)) {
    try {
      gpu_ = std::make_unique<cuda::PairProducts>(dims_, pairs_, block_rows_);
    } catch (const Error&) {
      gpu_.reset();  // e.g. not enough device memory: the CPU path below is always there
    }
  }
#else
  (void)backend;
#endif
  // The CPU cross sums (d_i × d_j doubles per pair, ~60 MB for 30 pairs of 512 units) are allocated by the
  // first add(), which runs on the pool: zeroing them here would stall the JS thread that constructs us.
}

CorrelationAccumulator::~CorrelationAccumulator() = default;

const char* CorrelationAccumulator::backend() const { return gpu_ ? "cuda" : "cpu"; }

size_t CorrelationAccumulator::add_pair(int i, int j) {
  const int L = static_cast<int>(dims_.size());
  if (i < 0 || i >= L || j < 0 || j >= L)
    throw Error("INVALID_ARGUMENT", "pair " + std::to_string(pairs_.size()) + " = (" + std::to_string(i) + ", " +
                                        std::to_string(j) + ") names a layer outside 0.." + std::to_string(L - 1));
  if (gpu_) throw Error("INVALID_STATE", "pairs cannot be added to an accumulator on the GPU backend");
  check_usable();
  const double di = double(dims_[i]), dj = double(dims_[j]);
  const double bytes = sizeof(double) * (2 * di + 2 * dj + di * dj);
  check_fits_in_memory(open_bytes_ + bytes, "the correlation sums of layer pair (" + std::to_string(i) + ", " +
                                                std::to_string(j) + ") beside the open ones");
  Pair s;
  s.i = i;
  s.j = j;
  s.sum_i.assign(dims_[i], 0.0);
  s.sumsq_i.assign(dims_[i], 0.0);
  s.sum_j.assign(dims_[j], 0.0);
  s.sumsq_j.assign(dims_[j], 0.0);
  pairs_.emplace_back(i, j);
  state_.push_back(std::move(s));
  open_bytes_ += bytes;  // once the pair is open: an allocation that failed above leaves the count as it was
  return pairs_.size() - 1;
}

void CorrelationAccumulator::release(size_t p) {
  check_pair(p);
  Pair& s = state_[p];
  if (s.released) return;
  s.released = true;
  const double di = double(dims_[s.i]), dj = double(dims_[s.j]);
  open_bytes_ -= sizeof(double) * (2 * di + 2 * dj + di * dj);
  // swap with empties: clear() would keep the capacity, which is the memory this call exists to return
  LargeVector<double>().swap(s.cross);
  std::vector<double>().swap(s.sum_i);
  std::vector<double>().swap(s.sumsq_i);
  std::vector<double>().swap(s.sum_j);
  std::vector<double>().swap(s.sumsq_j);
  // Scratch of layers no open pair uses any more goes too.
  const std::vector<bool> active = active_layers();
  for (size_t l = 0; l < dims_.size(); ++l)
    if (!active[l]) std::vector<float>().swap(shifted_[l]);
}

bool CorrelationAccumulator::released(size_t p) const {
  check_pair(p);
  return state_[p].released;
}

size_t CorrelationAccumulator::open_pairs() const {
  size_t n = 0;
  for (const Pair& s : state_) n += s.released ? 0 : 1;
  return n;
}

size_t CorrelationAccumulator::pair_count(size_t p) const {
  check_pair(p);
  return state_[p].count;
}

bool CorrelationAccumulator::used(size_t layer) const {
  for (const Pair& s : state_)
    if (!s.released && (static_cast<size_t>(s.i) == layer || static_cast<size_t>(s.j) == layer)) return true;
  return false;
}

std::vector<bool> CorrelationAccumulator::active_layers() const {
  std::vector<bool> active(dims_.size(), false);
  for (const Pair& s : state_)
    if (!s.released) active[s.i] = active[s.j] = true;
  return active;
}

void CorrelationAccumulator::check_pair(size_t p) const {
  if (p >= pairs_.size())
    throw Error("INVALID_ARGUMENT", "pair index " + std::to_string(p) + " is out of range (this accumulator has " +
                                        std::to_string(pairs_.size()) + " pairs)");
}

void CorrelationAccumulator::check_usable() const {
  if (broken_)
    throw Error("INVALID_STATE",
                "this correlation accumulator holds part of a batch (an earlier add was aborted half-way); "
                "create a new one");
}

void CorrelationAccumulator::set_block_rows(size_t rows) {
  if (rows == 0 || rows > (size_t(1) << 24)) throw Error("INVALID_ARGUMENT", "block_rows must be in 1..16777216");
  if (count() > 0) throw Error("INVALID_STATE", "block_rows can only be changed before the first batch");
  block_rows_ = rows;
#ifdef FFMERGE_HAVE_CUDA
  if (gpu_) gpu_->reserve_rows(rows);
#endif
}

void CorrelationAccumulator::check_finite(JobControl& ctl, const std::vector<const float*>& layers,
                                          const std::vector<bool>& active, size_t rows, size_t row0) const {
  for (size_t l = 0; l < dims_.size(); ++l) {
    if (!active[l]) continue;
    const size_t d = dims_[l];
    const float* x = layers[l];
    ctl.pool().parallel_for(rows, std::max<size_t>(1, 16384 / d), [&](size_t r0, size_t r1) {
      // x − x is 0 for finite x and NaN for NaN/±Inf: one vectorisable pass, the exact spot only on failure.
      float poison = 0.0f;
      for (size_t k = r0 * d; k < r1 * d; ++k) poison += x[k] - x[k];
      if (poison == 0.0f) return;
      for (size_t k = r0 * d; k < r1 * d; ++k)
        if (!std::isfinite(x[k]))
          throw Error("NON_FINITE_ACTIVATIONS", "the activations of layer " + std::to_string(l) + " contain " +
                                                    (std::isnan(x[k]) ? "NaN" : "Inf") + " (batch row " +
                                                    std::to_string(row0 + k / d) + ", unit " + std::to_string(k % d) +
                                                    "); the batch was not added");
    });
  }
}

void CorrelationAccumulator::init_shift(JobControl& ctl, const std::vector<const float*>& layers,
                                        const std::vector<bool>& active, size_t rows) {
  for (size_t l = 0; l < dims_.size(); ++l) {
    if (!active[l] || !shift_[l].empty()) continue;
    const size_t d = dims_[l];
    const float* x = layers[l];
    std::vector<float> shift(d);
    ctl.pool().parallel_for(d, kColumnGrain, [&](size_t c0, size_t c1) {
      std::vector<double> acc(c1 - c0, 0.0);
      for (size_t r = 0; r < rows; ++r) {
        const float* row = x + r * d;
        for (size_t c = c0; c < c1; ++c) acc[c - c0] += row[c];
      }
      for (size_t c = c0; c < c1; ++c) shift[c] = static_cast<float>(acc[c - c0] / static_cast<double>(rows));
    });
    // in double: x − shift of two finite floats near float's limit (±3.4e38) overflows in float
    double spread = 0.0, size = 0.0;
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < d; ++c) {
        spread = std::max(spread, std::fabs(double(x[r * d + c]) - double(shift[c])));
        size = std::max(size, std::fabs(double(x[r * d + c])));
      }
    // A first batch that does not vary (one row, or every row alike) gives no spread: where its values' size is
    // far from 1, that size stands in for it (values of 1e-30 left at scale 1 underflow the float products).
    // Near 1 the scale stays 1, so a first row of 1e-6 does not refuse later rows of 1e9 as too wide. Within
    // float's normal exponents both ways, so the scale and the scaled values stay finite and normal.
    const double gauge = spread > 0.0 ? spread : (size < 0x1p-40 || size > 0x1p40 ? size : 0.0);
    if (gauge > 0.0) scale_[l] = std::ldexp(1.0f, std::clamp(-std::ilogb(gauge), -100, 100));
    shift_[l] = std::move(shift);
  }
}

void CorrelationAccumulator::shift_block(JobControl& ctl, size_t l, const float* src, size_t rows, float* dst) {
  const size_t d = dims_[l];
  const float* shift = shift_[l].data();
  const float scale = scale_[l];
  block_sum_[l].assign(d, 0.0);
  block_sumsq_[l].assign(d, 0.0);
  double* sum = block_sum_[l].data();
  double* sumsq = block_sumsq_[l].data();
  // Split by columns so that each task owns its units' sums outright (no reduction across threads).
  ctl.pool().parallel_for(d, kColumnGrain, [&](size_t c0, size_t c1) {
    const size_t w = c1 - c0;
    std::vector<double> s(w, 0.0), q(w, 0.0);
    float largest = 0.0f;
    for (size_t r = 0; r < rows; ++r) {
      const float* in = src + r * d + c0;
      float* out = dst + r * d + c0;
      for (size_t c = 0; c < w; ++c) {
        // the difference in double: two finite floats of opposite sign near ±3.4e38 overflow in float
        const float v = static_cast<float>((double(in[c]) - double(shift[c0 + c])) * double(scale));
        out[c] = v;
        largest = std::max(largest, std::fabs(v));
        s[c] += v;
        q[c] += static_cast<double>(v) * v;  // exact product of two floats in fp64
      }
    }
    // A later batch far wider than the first (scaled to about 1): its float32 products over a block of rows
    // would overflow (2^48 squared times 2^24 rows is 2^120, below float's 2^128), or the result would be a
    // silent ±1.
    if (!(largest < 0x1p48f))
      throw Error("NON_FINITE_ACTIVATIONS",
                  "the activations of layer " + std::to_string(l) + " spread " +
                      (std::isfinite(largest) ? "about 2^" + std::to_string(std::ilogb(largest)) + " times" : "far") +
                      " wider than in the first batch, beyond what float32 products can sum; the batch was "
                      "not added (the first batch sets the layer's scale: begin with rows that vary as the data "
                      "does, not one row)");
    for (size_t c = 0; c < w; ++c) {
      sum[c0 + c] = s[c];
      sumsq[c0 + c] = q[c];
    }
  });
}

void CorrelationAccumulator::add_products(JobControl& ctl, size_t p, const float* x, const float* y, size_t rows) {
#ifdef FFMERGE_HAVE_CUDA
  if (gpu_) {
    gpu_->accumulate(p, rows);
    return;
  }
#endif
  const size_t di = dims_[pairs_[p].first], dj = dims_[pairs_[p].second];
  accumulate_cross_tiled(ctl, x, di, di, y, dj, dj, rows, state_[p].cross.data(), dj);
}

void CorrelationAccumulator::add(JobControl& ctl, const std::vector<const float*>& layers, size_t rows, size_t row0) {
  check_usable();
  if (layers.size() != dims_.size())
    throw Error("INVALID_ARGUMENT", "expected activations for " + std::to_string(dims_.size()) + " layers, got " +
                                        std::to_string(layers.size()));
  const std::vector<bool> active = active_layers();
  for (size_t l = 0; l < dims_.size(); ++l)
    if (active[l] && !layers[l])
      throw Error("INVALID_ARGUMENT", "layer " + std::to_string(l) + " is used by a pair but has no activations");
  if (rows == 0) return;
  if (open_pairs() == 0) throw Error("INVALID_STATE", "no layer pair is open in this correlation accumulator");
  ctl.check();
  check_finite(ctl, layers, active, rows, row0);
  std::vector<size_t> open;
  for (size_t p = 0; p < state_.size(); ++p)
    if (!state_[p].released) open.push_back(p);
  if (!gpu_)
    for (size_t p : open)
      if (state_[p].cross.empty()) state_[p].cross.assign(dims_[pairs_[p].first] * dims_[pairs_[p].second], 0.0);
  // The shift only has to be near the mean, so the first block's rows are enough to estimate it.
  init_shift(ctl, layers, active, std::min(rows, block_rows_));

  const size_t block = std::min(rows, block_rows_);
  for (size_t l = 0; l < dims_.size(); ++l)
    if (active[l]) shifted_[l].resize(block * dims_[l]);
#ifdef FFMERGE_HAVE_CUDA
  if (gpu_) gpu_->reserve_rows(block);
#endif
  const size_t blocks = (rows + block - 1) / block;
  const double total = static_cast<double>(blocks * open.size());
  bool modified = false;
  try {
    for (size_t b = 0; b < blocks; ++b) {
      ctl.check();
      const size_t r0 = b * block, n = std::min(block, rows - r0);
      modified = true;
      for (size_t l = 0; l < dims_.size(); ++l) {
        if (!active[l]) continue;
        shift_block(ctl, l, layers[l] + r0 * dims_[l], n, shifted_[l].data());
#ifdef FFMERGE_HAVE_CUDA
        if (gpu_) gpu_->upload(l, shifted_[l].data(), n);
#endif
      }
      for (size_t k = 0; k < open.size(); ++k) {
        const size_t p = open[k];
        Pair& s = state_[p];
        const auto add_into = [](std::vector<double>& dst, const std::vector<double>& src) {
          for (size_t c = 0; c < dst.size(); ++c) dst[c] += src[c];
        };
        add_into(s.sum_i, block_sum_[s.i]);
        add_into(s.sumsq_i, block_sumsq_[s.i]);
        add_into(s.sum_j, block_sum_[s.j]);
        add_into(s.sumsq_j, block_sumsq_[s.j]);
        if (k > 0) ctl.check();  // many pairs make a long block: answer a cancel between them too
        add_products(ctl, p, shifted_[s.i].data(), shifted_[s.j].data(), n);
        ctl.progress(static_cast<double>(b * open.size() + k + 1), total);
      }
    }
  } catch (...) {
    if (modified) broken_ = true;
    throw;
  }
  for (size_t p : open) state_[p].count += rows;
  count_.fetch_add(rows, std::memory_order_relaxed);
}

// What finalize() and explained() read of one pair: per-unit 1/sqrt(Σ(x−mean)²) of both sides, layer j's
// means, and the cross sums (downloaded from the GPU there).
struct CorrelationAccumulator::Centered {
  size_t n = 0, di = 0, dj = 0;
  std::vector<double> inv_i, inv_j, mean_j;
  const std::vector<double>* sum_i = nullptr;
  std::vector<double> downloaded;
  const double* cross = nullptr;
  // Σ(x−mx)(y−my) of unit a of layer i and unit b of layer j. With sums of shifted values,
  // Σ(x−sx)(y−sy) − n·(mx−sx)(my−sy) = c − sum_i·mean_j.
  double cov_sum(size_t a, size_t b) const { return cross[a * dj + b] - (*sum_i)[a] * mean_j[b]; }
};

CorrelationAccumulator::Centered CorrelationAccumulator::centered(JobControl& ctl, size_t p) const {
  check_pair(p);
  check_usable();
  const Pair& st = state_[p];
  if (st.released)
    throw Error("INVALID_STATE", "pair " + std::to_string(p) + " was released, so its correlation is gone");
  const size_t n = st.count;
  if (n == 0) throw Error("INVALID_STATE", "no activations were added yet, so there is no correlation to compute");
  ctl.check();
  Centered c;
  c.n = n;
  c.di = dims_[pairs_[p].first];
  c.dj = dims_[pairs_[p].second];
  const double nd = static_cast<double>(n);
  // 1/sqrt(Σ(x−mean)²) per unit, 0 for a zero-variance unit so its whole row/column of C comes out 0. The
  // relative floor treats a spread below fp64 resolution of the shifted sums as zero variance (rounding
  // noise would otherwise become a correlation).
  auto inv_norms = [&](const std::vector<double>& sum, const std::vector<double>& sumsq) {
    std::vector<double> inv(sum.size());
    for (size_t a = 0; a < sum.size(); ++a) {
      const double s = sum[a], q = sumsq[a];
      const double ss = q - s * s / nd;
      inv[a] = (ss > 0.0 && ss > 1e-12 * q) ? 1.0 / std::sqrt(ss) : 0.0;
    }
    return inv;
  };
  c.inv_i = inv_norms(st.sum_i, st.sumsq_i);
  c.inv_j = inv_norms(st.sum_j, st.sumsq_j);
  c.sum_i = &st.sum_i;
  c.mean_j.resize(c.dj);
  for (size_t b = 0; b < c.dj; ++b) c.mean_j[b] = st.sum_j[b] / nd;
#ifdef FFMERGE_HAVE_CUDA
  if (gpu_) {
    c.downloaded.resize(c.di * c.dj);
    gpu_->download(p, c.downloaded.data());
    c.cross = c.downloaded.data();
  }
#endif
  if (!c.cross) c.cross = st.cross.data();
  return c;
}

std::vector<float> CorrelationAccumulator::finalize(JobControl& ctl, size_t p) const {
  const Centered c = centered(ctl, p);
  const size_t di = c.di, dj = c.dj;
  std::vector<float> out(di * dj);
  ctl.pool().parallel_for(di, std::max<size_t>(1, 65536 / dj), [&](size_t a0, size_t a1) {
    ctl.check();
    for (size_t a = a0; a < a1; ++a) {
      const double ia = c.inv_i[a];
      float* o = out.data() + a * dj;
      for (size_t b = 0; b < dj; ++b) {
        const double r = c.cov_sum(a, b) * ia * c.inv_j[b];
        o[b] = static_cast<float>(std::min(1.0, std::max(-1.0, r)));
      }
    }
  });
  ctl.check();
  ctl.progress(static_cast<double>(di), static_cast<double>(di));
  return out;
}

std::vector<double> CorrelationAccumulator::explained(JobControl& ctl, size_t p) const {
  const Centered c = centered(ctl, p);
  const size_t di = c.di, dj = c.dj;
  const double nd = static_cast<double>(c.n);
  const double scale_j = scale_[pairs_[p].second];
  std::vector<double> out(di);
  ctl.pool().parallel_for(di, std::max<size_t>(1, 65536 / dj), [&](size_t a0, size_t a1) {
    ctl.check();
    for (size_t a = a0; a < a1; ++a) {
      // corr(a, b)² · var(b) = cov_sum² · inv_i² · inv_j² · (1 / inv_j²) / n: var(b) cancels inv_j, except
      // that a zero-variance b (inv_j 0) has correlation 0 and adds nothing.
      double s = 0;
      for (size_t b = 0; b < dj; ++b) {
        const double v = c.cov_sum(a, b);
        s += c.inv_j[b] != 0.0 ? v * v : 0.0;
      }
      out[a] = s * c.inv_i[a] * c.inv_i[a] / nd / (scale_j * scale_j);  // var(b) of the unscaled values
    }
  });
  ctl.check();
  ctl.progress(static_cast<double>(di), static_cast<double>(di));
  return out;
}

}  // namespace ffm
