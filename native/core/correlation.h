// Streamed Pearson cross-correlation between the hidden units of layer pairs.
//
// Batches of activations (rows × d_ff per layer) are folded into per-pair fp64 accumulators of the
// shifted cross products Σ(x−sx)ᵀ(y−sy), and per-layer fp64 Σ(x−s) and Σ(x−s)²; finalize() turns them into
// Pearson correlation. Why the shift: Σxy − n·mx·my cancels catastrophically when the means are large
// relative to the stds (FF pre-activations often are); subtracting a per-unit constant close to the mean
// (the first batch's column means) first keeps every sum small, and Pearson does not depend on it.
//
// Each block of ≤ block_rows rows is multiplied in fp32 tile by tile (core/cross_tiles.h: the heavy part,
// multithreaded, on the sgemm micro-kernels) and each tile is added into the fp64 accumulator while still in
// cache, so the fp32 rounding error is bounded by one block's length, not by the number of tokens. Memory is
// O(Σ open pair dims² + block_rows · Σ used dims), never O(tokens).
//
// Pairs in flight: a caller that needs many pairs but can feed them a few at a time (the layer-major
// calibration capture) creates the accumulator with no pairs, opens pairs with add_pair(), and releases each
// one once finalized: only open pairs hold an accumulator, and add() feeds exactly the open pairs. Every pair
// keeps its own row count and unit sums (a pair opened later sees only the rows added after it); the shift of
// a layer is fixed by the first batch that carries it, so the same batches give the same numbers whatever
// else was open at the time.
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
#include "core/large_buffer.h"

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
  // No pairs yet: open them with add_pair() (always the CPU backend, whose accumulators can come and go).
  explicit CorrelationAccumulator(std::vector<size_t> dims);
  ~CorrelationAccumulator();
  CorrelationAccumulator(const CorrelationAccumulator&) = delete;
  CorrelationAccumulator& operator=(const CorrelationAccumulator&) = delete;

  // Opens pair (i, j) and returns its index (indices are never reused). Its sums start empty: it sees the rows
  // of later add() calls only. Throws INVALID_ARGUMENT for a layer out of range, INVALID_STATE on the GPU
  // backend (its pair set is fixed at construction) or on a broken accumulator.
  size_t add_pair(int i, int j);
  // Frees pair p's accumulator (finalize it first if its result is wanted): later finalize(p) throws
  // INVALID_STATE and add() no longer needs or feeds its layers. Releasing twice is a no-op.
  void release(size_t pair_index);
  bool released(size_t pair_index) const;
  // Pairs not released.
  size_t open_pairs() const;

  // One batch: layers[l] points to rows × dims[l] row-major float32 activations of layer l (all layers same
  // rows, padding already removed by the caller). Layers not used by any open pair may be nullptr.
  // A batch containing NaN/Inf is rejected whole (NON_FINITE_ACTIVATIONS, naming the layer) and leaves the
  // accumulator unchanged. A cancel that lands after part of the batch was added leaves the accumulator
  // unusable: later calls throw INVALID_STATE.
  // row0: the first row's number in the caller's batch, for messages (a block of a larger batch)
  void add(JobControl& ctl, const std::vector<const float*>& layers, size_t rows, size_t row0 = 0);
  size_t count() const { return count_.load(std::memory_order_relaxed); }  // rows added so far (all pairs)
  size_t pair_count(size_t pair_index) const;  // rows pair p has seen
  // Pearson correlation, dims[i] × dims[j] row-major (unit a of layer i vs unit b of layer j); 0 where either
  // std is 0. Throws INVALID_STATE before the pair saw any row, or once it was released.
  std::vector<float> finalize(JobControl& ctl, size_t pair_index) const;
  // For each unit a of layer i, the variance of layer j's units it explains alone: Σ_b corr(a, b)² · var(b)
  // (var over the rows, /n). The first step of a forward regression of layer j on layer i's units ranks
  // them by it (select's prescreen), and it needs no dims[i] × dims[j] matrix out. Same errors as finalize.
  std::vector<double> explained(JobControl& ctl, size_t pair_index) const;

  const std::vector<size_t>& dims() const { return dims_; }
  const std::vector<std::pair<int, int>>& pairs() const { return pairs_; }
  bool used(size_t layer) const;  // whether an open pair uses the layer
  // Rows per fp32 block product (default 2048). Smaller is more accurate and slower; settable before the
  // first add().
  void set_block_rows(size_t rows);
  // "cpu" or "cuda": where the block products run.
  const char* backend() const;
  // Set after a cancel interrupted a batch half-way: the sums hold part of a batch.
  bool broken() const { return broken_; }
  // For a caller that adds one batch in several calls (the bindings' addFF, by row blocks): a batch stopped
  // after some of its calls is partly in the sums, which then refuse further use as an aborted add's do.
  void mark_broken() { broken_ = true; }

 private:
  // One pair's running sums. Released pairs keep only (i, j) and the flag.
  struct Pair {
    int i = 0, j = 0;
    bool released = false;
    size_t count = 0;
    std::vector<double> sum_i, sumsq_i, sum_j, sumsq_j;  // Σ(x−s), Σ(x−s)² of each side's units
    LargeVector<double> cross;  // Σ(x−sx)ᵀ(y−sy), dims[i] × dims[j] (CPU backend; allocated by the first add)
  };

  struct Centered;
  Centered centered(JobControl& ctl, size_t p) const;
  void check_pair(size_t p) const;
  void check_usable() const;
  std::vector<bool> active_layers() const;
  void init_shift(JobControl& ctl, const std::vector<const float*>& layers, const std::vector<bool>& active,
                  size_t rows);
  void check_finite(JobControl& ctl, const std::vector<const float*>& layers, const std::vector<bool>& active,
                    size_t rows, size_t row0) const;
  void shift_block(JobControl& ctl, size_t layer, const float* src, size_t rows, float* dst);
  void add_products(JobControl& ctl, size_t pair, const float* x, const float* y, size_t rows);

  std::vector<size_t> dims_;
  std::vector<std::pair<int, int>> pairs_;
  std::vector<Pair> state_;
  size_t block_rows_ = 2048;
  // Bytes the open pairs' sums take once allocated (the cross sums come with the first add): a request for
  // more than the machine has is OUT_OF_MEMORY when the pair is opened, not an OOM kill later.
  double open_bytes_ = 0;
  std::atomic<size_t> count_{0};
  bool broken_ = false;
  // Per layer: the shift s (empty until the first batch carrying the layer).
  std::vector<std::vector<float>> shift_;
  // Per layer: a power of two that brings the first batch's largest |x − s| into [1, 2) (1 until then). The
  // cross sums are float32 products: activations near 1e19 overflow them and near 1e-23 underflow them, where
  // Pearson's r does not depend on the scale at all. Exact (a power of two), and the same for every batch.
  std::vector<float> scale_;
  // Per layer: one block's Σ(x−s), Σ(x−s)² (fp64), added into every open pair that uses the layer.
  std::vector<std::vector<double>> block_sum_, block_sumsq_;
  // Scratch reused across batches: shifted block per active layer.
  std::vector<std::vector<float>> shifted_;
  std::unique_ptr<cuda::PairProducts> gpu_;
};

}  // namespace ffm
