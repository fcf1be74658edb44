// CUDA kernels of the correlation accumulator (see correlation_cuda.h).
//
// One kernel, Xᵀ·Y accumulated into fp64: each 256-thread block owns a 64 × 64 tile of the output and walks
// the rows in steps of 16 through shared memory; every thread keeps a 4 × 4 patch in fp32 registers, flushes
// it into fp64 registers every 256 rows (the same rounding bound as the CPU path's sgemm slices), and adds
// the fp64 patch into the accumulator once at the end. Each output element belongs to exactly one thread,
// so there are no atomics and results are deterministic. No cuBLAS: the toolkit here ships without it, and
// this keeps the CUDA build's only dependency the runtime.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "cuda/correlation_cuda.h"

namespace ffm::cuda {
namespace {

constexpr int kTile = 64;        // output rows/cols per thread block
constexpr int kStep = 16;        // activation rows per shared-memory stage
constexpr int kThreads = 256;    // 16 × 16 threads, 4 × 4 outputs each
constexpr int kPatch = 4;
constexpr int kFlushRows = 256;  // fp32 partial sums span at most this many rows

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky-free error so later calls are not blamed for it
  if (err == cudaErrorMemoryAllocation)
    throw Error("OUT_OF_MEMORY", std::string("not enough GPU memory for the correlation accumulators (") + what + ")");
  throw Error("NATIVE_ERROR", std::string("CUDA ") + what + " failed: " + cudaGetErrorString(err));
}

__global__ void xty_accumulate(const float* __restrict__ x, int dx, const float* __restrict__ y, int dy, int rows,
                               double* __restrict__ acc) {
  __shared__ float xs[kStep][kTile];
  __shared__ float ys[kStep][kTile];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int a0 = blockIdx.y * kTile, b0 = blockIdx.x * kTile;
  float part[kPatch][kPatch] = {};
  double total[kPatch][kPatch] = {};
  for (int r0 = 0; r0 < rows; r0 += kStep) {
    for (int k = threadIdx.x; k < kStep * kTile; k += kThreads) {
      const int rr = k / kTile, cc = k % kTile, r = r0 + rr;
      xs[rr][cc] = (r < rows && a0 + cc < dx) ? x[static_cast<size_t>(r) * dx + a0 + cc] : 0.0f;
      ys[rr][cc] = (r < rows && b0 + cc < dy) ? y[static_cast<size_t>(r) * dy + b0 + cc] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kStep; ++rr) {
      float xv[kPatch], yv[kPatch];
#pragma unroll
      for (int i = 0; i < kPatch; ++i) xv[i] = xs[rr][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < kPatch; ++j) yv[j] = ys[rr][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < kPatch; ++i)
#pragma unroll
        for (int j = 0; j < kPatch; ++j) part[i][j] = fmaf(xv[i], yv[j], part[i][j]);
    }
    __syncthreads();
    if ((r0 + kStep) % kFlushRows == 0 || r0 + kStep >= rows) {
#pragma unroll
      for (int i = 0; i < kPatch; ++i)
#pragma unroll
        for (int j = 0; j < kPatch; ++j) {
          total[i][j] += part[i][j];
          part[i][j] = 0.0f;
        }
    }
  }
#pragma unroll
  for (int i = 0; i < kPatch; ++i) {
    const int a = a0 + ty + 16 * i;
    if (a >= dx) continue;
#pragma unroll
    for (int j = 0; j < kPatch; ++j) {
      const int b = b0 + tx + 16 * j;
      if (b < dy) acc[static_cast<size_t>(a) * dy + b] += total[i][j];
    }
  }
}

}  // namespace

bool available(std::string* name, int* count) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
    cudaGetLastError();
    if (count) *count = 0;
    return false;
  }
  if (count) *count = n;
  if (name) {
    cudaDeviceProp prop{};
    *name = cudaGetDeviceProperties(&prop, 0) == cudaSuccess ? std::string(prop.name) : std::string("unknown");
  }
  return true;
}

struct PairProducts::Impl {
  int device = 0;
  std::vector<size_t> dims;
  std::vector<std::pair<int, int>> pairs;
  std::vector<float*> layer_buf;  // per layer, nullptr when unused
  std::vector<double*> acc;       // per pair
  size_t capacity_rows = 0;

  void free_all() {
    for (float*& p : layer_buf) {
      if (p) cudaFree(p);
      p = nullptr;
    }
    for (double*& p : acc) {
      if (p) cudaFree(p);
      p = nullptr;
    }
  }
};

PairProducts::PairProducts(const std::vector<size_t>& dims, const std::vector<std::pair<int, int>>& pairs,
                           size_t max_rows)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  check(cudaGetDevice(&m.device), "cudaGetDevice");
  // A device older than the architectures compiled in (CMAKE_CUDA_ARCHITECTURES) has no image of the kernel:
  // find out here, so the accumulator falls back to the CPU instead of failing on its first batch.
  cudaFuncAttributes attr{};
  check(cudaFuncGetAttributes(&attr, xty_accumulate), "kernel lookup (is this GPU older than the build targets?)");
  m.dims = dims;
  m.pairs = pairs;
  m.layer_buf.assign(dims.size(), nullptr);
  m.acc.assign(pairs.size(), nullptr);
  try {
    for (size_t p = 0; p < pairs.size(); ++p) {
      const size_t n = dims[pairs[p].first] * dims[pairs[p].second];
      check(cudaMalloc(&m.acc[p], n * sizeof(double)), "cudaMalloc(accumulator)");
      check(cudaMemset(m.acc[p], 0, n * sizeof(double)), "cudaMemset(accumulator)");
    }
    reserve_rows(max_rows);
  } catch (...) {
    m.free_all();
    throw;
  }
}

PairProducts::~PairProducts() {
  if (impl_) {
    cudaSetDevice(impl_->device);
    impl_->free_all();
  }
}

void PairProducts::reserve_rows(size_t rows) {
  Impl& m = *impl_;
  if (rows <= m.capacity_rows) return;
  check(cudaSetDevice(m.device), "cudaSetDevice");
  for (size_t l = 0; l < m.dims.size(); ++l) {
    bool used = false;
    for (auto [i, j] : m.pairs) used = used || static_cast<size_t>(i) == l || static_cast<size_t>(j) == l;
    if (!used) continue;
    if (m.layer_buf[l]) cudaFree(m.layer_buf[l]);
    m.layer_buf[l] = nullptr;
    check(cudaMalloc(&m.layer_buf[l], rows * m.dims[l] * sizeof(float)), "cudaMalloc(activation block)");
  }
  m.capacity_rows = rows;
}

void PairProducts::upload(size_t layer, const float* host, size_t rows) {
  Impl& m = *impl_;
  if (rows > m.capacity_rows) reserve_rows(rows);
  check(cudaSetDevice(m.device), "cudaSetDevice");
  check(cudaMemcpy(m.layer_buf[layer], host, rows * m.dims[layer] * sizeof(float), cudaMemcpyHostToDevice),
        "cudaMemcpy(activations to device)");
}

void PairProducts::accumulate(size_t pair, size_t rows) {
  Impl& m = *impl_;
  if (rows == 0) return;
  check(cudaSetDevice(m.device), "cudaSetDevice");
  const auto [i, j] = m.pairs[pair];
  const int dx = static_cast<int>(m.dims[i]), dy = static_cast<int>(m.dims[j]);
  dim3 grid((dy + kTile - 1) / kTile, (dx + kTile - 1) / kTile);
  xty_accumulate<<<grid, kThreads>>>(m.layer_buf[i], dx, m.layer_buf[j], dy, static_cast<int>(rows), m.acc[pair]);
  check(cudaGetLastError(), "kernel launch (correlation block product)");
  check(cudaDeviceSynchronize(), "correlation block product");
}

void PairProducts::download(size_t pair, double* host) const {
  const Impl& m = *impl_;
  check(cudaSetDevice(m.device), "cudaSetDevice");
  const size_t n = m.dims[m.pairs[pair].first] * m.dims[m.pairs[pair].second];
  check(cudaMemcpy(host, m.acc[pair], n * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy(accumulator to host)");
}

}  // namespace ffm::cuda
