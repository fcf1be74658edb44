#include "core/correlation.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/gemm.h"

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
// Rows per sgemm call inside a block (see add_products).
constexpr size_t kSliceRows = 256;
}  // namespace

CorrelationAccumulator::CorrelationAccumulator(std::vector<size_t> dims, std::vector<std::pair<int, int>> pairs,
                                               CorrelationBackend backend)
    : dims_(std::move(dims)), pairs_(std::move(pairs)) {
  if (dims_.empty()) throw Error("INVALID_ARGUMENT", "a correlation accumulator needs at least one layer width");
  for (size_t l = 0; l < dims_.size(); ++l)
    if (dims_[l] == 0) throw Error("INVALID_ARGUMENT", "layer " + std::to_string(l) + " has width 0");
  if (pairs_.empty()) throw Error("INVALID_ARGUMENT", "a correlation accumulator needs at least one layer pair");
  used_.assign(dims_.size(), false);
  const int L = static_cast<int>(dims_.size());
  for (size_t p = 0; p < pairs_.size(); ++p) {
    auto [i, j] = pairs_[p];
    if (i < 0 || i >= L || j < 0 || j >= L)
      throw Error("INVALID_ARGUMENT", "pair " + std::to_string(p) + " = (" + std::to_string(i) + ", " +
                                          std::to_string(j) + ") names a layer outside 0.." + std::to_string(L - 1));
    used_[i] = used_[j] = true;
  }
  shift_.resize(dims_.size());
  sum_.resize(dims_.size());
  sumsq_.resize(dims_.size());
  shifted_.resize(dims_.size());
  for (size_t l = 0; l < dims_.size(); ++l) {
    if (!used_[l]) continue;
    shift_[l].assign(dims_[l], 0.0f);
    sum_[l].assign(dims_[l], 0.0);
    sumsq_[l].assign(dims_[l], 0.0);
  }
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

void CorrelationAccumulator::set_block_rows(size_t rows) {
  if (rows == 0 || rows > (size_t(1) << 24)) throw Error("INVALID_ARGUMENT", "block_rows must be in 1..16777216");
  if (count() > 0) throw Error("INVALID_STATE", "block_rows can only be changed before the first batch");
  block_rows_ = rows;
#ifdef FFMERGE_HAVE_CUDA
  if (gpu_) gpu_->reserve_rows(rows);
#endif
}

void CorrelationAccumulator::check_finite(JobControl& ctl, const std::vector<const float*>& layers,
                                          size_t rows) const {
  for (size_t l = 0; l < dims_.size(); ++l) {
    if (!used_[l]) continue;
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
                                                    std::to_string(k / d) + ", unit " + std::to_string(k % d) +
                                                    "); the batch was not added");
    });
  }
}

void CorrelationAccumulator::init_shift(JobControl& ctl, const std::vector<const float*>& layers, size_t rows) {
  for (size_t l = 0; l < dims_.size(); ++l) {
    if (!used_[l]) continue;
    const size_t d = dims_[l];
    const float* x = layers[l];
    float* shift = shift_[l].data();
    ctl.pool().parallel_for(d, kColumnGrain, [&](size_t c0, size_t c1) {
      std::vector<double> acc(c1 - c0, 0.0);
      for (size_t r = 0; r < rows; ++r) {
        const float* row = x + r * d;
        for (size_t c = c0; c < c1; ++c) acc[c - c0] += row[c];
      }
      for (size_t c = c0; c < c1; ++c) shift[c] = static_cast<float>(acc[c - c0] / static_cast<double>(rows));
    });
  }
}

void CorrelationAccumulator::shift_block(JobControl& ctl, size_t l, const float* src, size_t rows, float* dst) {
  const size_t d = dims_[l];
  const float* shift = shift_[l].data();
  double* sum = sum_[l].data();
  double* sumsq = sumsq_[l].data();
  // Split by columns so that each task owns its units' sums outright (no reduction across threads).
  ctl.pool().parallel_for(d, kColumnGrain, [&](size_t c0, size_t c1) {
    const size_t w = c1 - c0;
    std::vector<double> s(w, 0.0), q(w, 0.0);
    for (size_t r = 0; r < rows; ++r) {
      const float* in = src + r * d + c0;
      float* out = dst + r * d + c0;
      for (size_t c = 0; c < w; ++c) {
        const float v = in[c] - shift[c0 + c];
        out[c] = v;
        s[c] += v;
        q[c] += static_cast<double>(v) * v;  // exact product of two floats in fp64
      }
    }
    for (size_t c = 0; c < w; ++c) {
      sum[c0 + c] += s[c];
      sumsq[c0 + c] += q[c];
    }
  });
}

void CorrelationAccumulator::add_products(JobControl& ctl, size_t p, const float* x, const float* y, size_t rows) {
  const size_t di = dims_[pairs_[p].first], dj = dims_[pairs_[p].second];
#ifdef FFMERGE_HAVE_CUDA
  if (gpu_) {
    gpu_->accumulate(p, rows);
    return;
  }
#endif
  product_.resize(di * dj);
  // fp32 rounding error grows with the length of each running sum. Feeding sgemm 256-row slices with beta=1
  // bounds it by ~√256 + √(rows/256) ulps whatever order the kernel sums in, at no extra pass over memory
  // (sgemm reads and writes C per K-panel anyway); the fp64 add below then runs once per block.
  for (size_t r0 = 0; r0 < rows; r0 += kSliceRows) {
    const size_t k = std::min(kSliceRows, rows - r0);
    sgemm(&ctl.pool(), /*trans_a=*/true, /*trans_b=*/false, di, dj, k, 1.0f, x + r0 * di, di, y + r0 * dj, dj,
          r0 == 0 ? 0.0f : 1.0f, product_.data(), dj);
  }
  double* acc = cross_[p].data();
  const float* prod = product_.data();
  ctl.pool().parallel_for(di * dj, 1 << 16, [&](size_t k0, size_t k1) {
    for (size_t k = k0; k < k1; ++k) acc[k] += prod[k];
  });
}

void CorrelationAccumulator::add(JobControl& ctl, const std::vector<const float*>& layers, size_t rows) {
  if (broken_)
    throw Error("INVALID_STATE",
                "this correlation accumulator holds part of a batch (an earlier add was aborted half-way); "
                "create a new one");
  if (layers.size() != dims_.size())
    throw Error("INVALID_ARGUMENT", "expected activations for " + std::to_string(dims_.size()) + " layers, got " +
                                        std::to_string(layers.size()));
  for (size_t l = 0; l < dims_.size(); ++l)
    if (used_[l] && !layers[l])
      throw Error("INVALID_ARGUMENT", "layer " + std::to_string(l) + " is used by a pair but has no activations");
  if (rows == 0) return;
  ctl.check();
  check_finite(ctl, layers, rows);
  if (!gpu_ && cross_.empty()) {
    cross_.resize(pairs_.size());
    for (size_t p = 0; p < pairs_.size(); ++p)
      cross_[p].assign(dims_[pairs_[p].first] * dims_[pairs_[p].second], 0.0);
  }
  // The shift only has to be near the mean, so the first block's rows are enough to estimate it.
  if (count() == 0) init_shift(ctl, layers, std::min(rows, block_rows_));

  const size_t block = std::min(rows, block_rows_);
  for (size_t l = 0; l < dims_.size(); ++l)
    if (used_[l]) shifted_[l].resize(block * dims_[l]);
#ifdef FFMERGE_HAVE_CUDA
  if (gpu_) gpu_->reserve_rows(block);
#endif
  const size_t blocks = (rows + block - 1) / block;
  const double total = static_cast<double>(blocks * pairs_.size());
  bool modified = false;
  try {
    for (size_t b = 0; b < blocks; ++b) {
      ctl.check();
      const size_t r0 = b * block, n = std::min(block, rows - r0);
      modified = true;
      for (size_t l = 0; l < dims_.size(); ++l) {
        if (!used_[l]) continue;
        shift_block(ctl, l, layers[l] + r0 * dims_[l], n, shifted_[l].data());
#ifdef FFMERGE_HAVE_CUDA
        if (gpu_) gpu_->upload(l, shifted_[l].data(), n);
#endif
      }
      for (size_t p = 0; p < pairs_.size(); ++p) {
        if (p > 0) ctl.check();  // many pairs make a long block: answer a cancel between them too
        add_products(ctl, p, shifted_[pairs_[p].first].data(), shifted_[pairs_[p].second].data(), n);
        ctl.progress(static_cast<double>(b * pairs_.size() + p + 1), total);
      }
    }
  } catch (...) {
    if (modified) broken_ = true;
    throw;
  }
  count_.fetch_add(rows, std::memory_order_relaxed);
}

std::vector<float> CorrelationAccumulator::finalize(JobControl& ctl, size_t p) const {
  if (p >= pairs_.size())
    throw Error("INVALID_ARGUMENT", "pair index " + std::to_string(p) + " is out of range (this accumulator has " +
                                        std::to_string(pairs_.size()) + " pairs)");
  if (broken_)
    throw Error("INVALID_STATE",
                "this correlation accumulator holds part of a batch (an earlier add was aborted half-way); "
                "create a new one");
  const size_t n = count();
  if (n == 0) throw Error("INVALID_STATE", "no activations were added yet, so there is no correlation to compute");
  ctl.check();
  const int li = pairs_[p].first, lj = pairs_[p].second;
  const size_t di = dims_[li], dj = dims_[lj];
  const double nd = static_cast<double>(n);

  // 1/sqrt(Σ(x−mean)²) per unit, 0 for a zero-variance unit so its whole row/column of C comes out 0. The
  // relative floor treats a spread below fp64 resolution of the shifted sums as zero variance (rounding
  // noise would otherwise become a correlation).
  auto inv_norms = [&](int l) {
    std::vector<double> inv(dims_[l]);
    for (size_t a = 0; a < dims_[l]; ++a) {
      const double s = sum_[l][a], q = sumsq_[l][a];
      const double ss = q - s * s / nd;
      inv[a] = (ss > 0.0 && ss > 1e-12 * q) ? 1.0 / std::sqrt(ss) : 0.0;
    }
    return inv;
  };
  const std::vector<double> inv_i = inv_norms(li), inv_j = inv_norms(lj);
  const std::vector<double>& sum_i = sum_[li];
  const std::vector<double>& sum_j = sum_[lj];

  std::vector<double> downloaded;
  const double* cross = nullptr;
#ifdef FFMERGE_HAVE_CUDA
  if (gpu_) {
    downloaded.resize(di * dj);
    gpu_->download(p, downloaded.data());
    cross = downloaded.data();
  }
#endif
  if (!cross) cross = cross_[p].data();

  std::vector<double> mean_j(dj);
  for (size_t b = 0; b < dj; ++b) mean_j[b] = sum_j[b] / nd;
  std::vector<float> out(di * dj);
  ctl.pool().parallel_for(di, std::max<size_t>(1, 65536 / dj), [&](size_t a0, size_t a1) {
    ctl.check();
    for (size_t a = a0; a < a1; ++a) {
      // Σ(x−sx)(y−sy) − n·(mx−sx)(my−sy) = Σ(x−mx)(y−my); with sums of shifted values that is c − sum_i·mean_j.
      const double si = sum_i[a], ia = inv_i[a];
      const double* c = cross + a * dj;
      float* o = out.data() + a * dj;
      for (size_t b = 0; b < dj; ++b) {
        const double r = (c[b] - si * mean_j[b]) * ia * inv_j[b];
        o[b] = static_cast<float>(std::min(1.0, std::max(-1.0, r)));
      }
    }
  });
  ctl.check();
  ctl.progress(static_cast<double>(di), static_cast<double>(di));
  return out;
}

}  // namespace ffm
