// Streamed Pearson cross-correlation between the hidden units of layer pairs.
//
// Batches of activations (rows × d_ff per layer) are folded into per-pair fp64 accumulators of the
// shifted cross products Σ(x−sx)ᵀ(y−sy), and per-layer fp64 Σ(x−s) and Σ(x−s)²; finalize() turns them into
// Pearson correlation. Why the shift: Σxy − n·mx·my cancels catastrophically when the means are large
// relative to the stds (FF pre-activations often are); subtracting a per-unit constant close to the mean
// (the first batch's column means) first keeps every sum small, and Pearson does not depend on it.
//
// Each block of ≤ block_rows() rows is multiplied in fp32 by ffm::sgemm (the heavy part, multithreaded)
// and added into the fp64 accumulators, so the fp32 rounding error is bounded by one block's length, not by
// the number of tokens. Memory is O(Σ pair dims² + block_rows · Σ used dims), never O(tokens).
//
// With FFMERGE_HAVE_CUDA and a visible device, the block products and the fp64 accumulators live on the
// GPU (native/cuda/correlation_cuda.h); the statistics, the checks and finalize stay here.
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/job.h"

namespace ffm {

namespace cuda {
class PairProducts;
}

// kAuto: the GPU when this is the CUDA build and a device is visible, else the CPU. kCpu: always the CPU
// (lets the CUDA build's tests compare the two).
enum class CorrelationBackend { kAuto, kCpu };

class CorrelationAccumulator {
 public:
  // dims[l] = width (d_ff) of layer l; pairs = (i, j) layer index pairs whose cross-correlation is wanted
  // (i may equal j). Throws ffm::Error("INVALID_ARGUMENT") for an empty/zero dim or a pair out of range.
  CorrelationAccumulator(std::vector<size_t> dims, std::vector<std::pair<int, int>> pairs,
                         CorrelationBackend backend = CorrelationBackend::kAuto);
  ~CorrelationAccumulator();
  CorrelationAccumulator(const CorrelationAccumulator&) = delete;
  CorrelationAccumulator& operator=(const CorrelationAccumulator&) = delete;

  // One batch: layers[l] points to rows × dims[l] row-major float32 activations of layer l (all layers same
  // rows, padding already removed by the caller). Layers not used by any pair may be nullptr.
  // A batch containing NaN/Inf is rejected whole (NON_FINITE_ACTIVATIONS, naming the layer) and leaves the
  // accumulator unchanged. A cancel that lands after part of the batch was added leaves the accumulator
  // unusable: later calls throw INVALID_STATE.
  void add(JobControl& ctl, const std::vector<const float*>& layers, size_t rows);
  size_t count() const { return count_.load(std::memory_order_relaxed); }  // rows seen so far
  // Pearson correlation, dims[i] × dims[j] row-major (unit a of layer i vs unit b of layer j); 0 where either
  // std is 0. Throws INVALID_STATE before any row was added.
  std::vector<float> finalize(JobControl& ctl, size_t pair_index) const;

  const std::vector<size_t>& dims() const { return dims_; }
  const std::vector<std::pair<int, int>>& pairs() const { return pairs_; }
  bool used(size_t layer) const { return used_[layer]; }
  // Rows per fp32 block product (default 2048). Smaller is more accurate and slower; settable before the
  // first add() (tests use it to exercise block boundaries).
  size_t block_rows() const { return block_rows_; }
  void set_block_rows(size_t rows);
  // "cpu" or "cuda": where the block products run.
  const char* backend() const;
  // Set after a cancel interrupted a batch half-way: the sums hold part of a batch.
  bool broken() const { return broken_; }

 private:
  void init_shift(JobControl& ctl, const std::vector<const float*>& layers, size_t rows);
  void check_finite(JobControl& ctl, const std::vector<const float*>& layers, size_t rows) const;
  void shift_block(JobControl& ctl, size_t layer, const float* src, size_t rows, float* dst);
  void add_products(JobControl& ctl, size_t pair, const float* x, const float* y, size_t rows);

  std::vector<size_t> dims_;
  std::vector<std::pair<int, int>> pairs_;
  std::vector<bool> used_;
  size_t block_rows_ = 2048;
  std::atomic<size_t> count_{0};
  bool broken_ = false;
  // Per layer (empty when unused): the shift s, Σ(x−s) and Σ(x−s)² in fp64.
  std::vector<std::vector<float>> shift_;
  std::vector<std::vector<double>> sum_;
  std::vector<std::vector<double>> sumsq_;
  // Per pair: Σ(x−sx)ᵀ(y−sy), dims[i] × dims[j] fp64 (CPU backend only; the CUDA backend keeps them on the GPU).
  std::vector<std::vector<double>> cross_;
  // Scratch reused across batches: shifted block per used layer, and one fp32 block product.
  std::vector<std::vector<float>> shifted_;
  std::vector<float> product_;
  std::unique_ptr<cuda::PairProducts> gpu_;
};

}  // namespace ffm
