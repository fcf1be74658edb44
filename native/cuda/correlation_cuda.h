// GPU side of CorrelationAccumulator (CUDA build only): device-resident fp64 accumulators of Xᵀ·Y for each
// layer pair, fed block by block with the shifted activations the CPU side prepares.
//
// Plain C++ header (no CUDA types) so native/core can include it with the host compiler; the kernels and
// the CUDA runtime calls live in correlation.cu. Errors arrive as ffm::Error (OUT_OF_MEMORY for device
// memory, NATIVE_ERROR naming the failed CUDA call otherwise).
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ffm::cuda {

// True when the CUDA runtime loads and sees at least one device; fills the first device's name and the
// device count when asked. Never throws: "no driver" and "no device" are both just false.
bool available(std::string* name, int* count);

class PairProducts {
 public:
  // Allocates, on the current device, one rows × dims[l] float buffer per layer used by a pair and one
  // zeroed dims[i] × dims[j] double accumulator per pair.
  PairProducts(const std::vector<size_t>& dims, const std::vector<std::pair<int, int>>& pairs, size_t max_rows);
  ~PairProducts();
  PairProducts(const PairProducts&) = delete;
  PairProducts& operator=(const PairProducts&) = delete;

  // Makes room for blocks of up to `rows` rows.
  void reserve_rows(size_t rows);
  // Copies one block (rows × dims[layer], row-major, already shifted) of a used layer to the device.
  void upload(size_t layer, const float* host, size_t rows);
  // accumulator[pair] += Xᵀ·Y over the last uploaded blocks of the pair's two layers (fp32 products summed
  // over ≤256 rows, then added in fp64). Returns once the device has finished.
  void accumulate(size_t pair, size_t rows);
  // Copies accumulator[pair] (dims[i] × dims[j] doubles) to host memory.
  void download(size_t pair, double* host) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ffm::cuda
