// CUDA build only: the GPU accumulator against the CPU one and a plain fp64 Pearson, on odd sizes, uneven
// batches and large means. Without a visible device it says so and passes (the CPU path is covered by
// test_correlation); run it on a GPU machine after `node scripts/ctest.js -DFFMERGE_CUDA=ON`.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/correlation.h"
#include "cuda/correlation_cuda.h"
#include "tests/check.h"
#include "tests/pearson_reference.h"

namespace {

using ffm_test::reference;

std::vector<float> random_layer(std::mt19937& rng, size_t n, size_t d, const std::vector<float>& common, float offset) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n * d);
  for (size_t r = 0; r < n; ++r)
    for (size_t a = 0; a < d; ++a) x[r * d + a] = offset + g(rng) + float(a % 3) * common[r];
  return x;
}

}  // namespace

TEST(gpu_matches_cpu_and_fp64_reference) {
  std::string name;
  int count = 0;
  if (!ffm::cuda::available(&name, &count)) {
    std::printf("    no CUDA device visible: GPU comparison skipped\n");
    return;
  }
  std::printf("    device: %s (%d visible)\n", name.c_str(), count);
  ffm::ThreadPool pool(0);
  ffm::JobControl ctl(pool);
  std::mt19937 rng(17);
  const std::vector<size_t> dims = {1, 67, 130, 3};
  const std::vector<size_t> batches = {1, 700, 33, 2100, 5};
  size_t n = 0;
  for (size_t b : batches) n += b;
  std::vector<float> common(n);
  std::normal_distribution<float> g;
  for (auto& v : common) v = g(rng);
  std::vector<std::vector<float>> layer;
  for (size_t l = 0; l < dims.size(); ++l) layer.push_back(random_layer(rng, n, dims[l], common, l == 2 ? 1000.f : 0.f));
  const std::vector<std::pair<int, int>> pairs = {{1, 2}, {2, 2}, {0, 1}, {3, 0}};
  ffm::CorrelationAccumulator gpu(dims, pairs);
  ffm::CorrelationAccumulator cpu(dims, pairs, ffm::CorrelationBackend::kCpu);
  CHECK(std::string(gpu.backend()) == "cuda");
  CHECK(std::string(cpu.backend()) == "cpu");
  gpu.set_block_rows(512);
  size_t r0 = 0;
  for (size_t rows : batches) {
    std::vector<const float*> ptrs;
    for (size_t l = 0; l < dims.size(); ++l) ptrs.push_back(layer[l].data() + r0 * dims[l]);
    gpu.add(ctl, ptrs, rows);
    cpu.add(ctl, ptrs, rows);
    r0 += rows;
  }
  for (size_t p = 0; p < pairs.size(); ++p) {
    auto [i, j] = pairs[p];
    auto g_out = gpu.finalize(ctl, p);
    auto c_out = cpu.finalize(ctl, p);
    auto want = reference(layer[i], layer[j], n, dims[i], dims[j]);
    double worst_ref = 0, worst_cpu = 0;
    for (size_t k = 0; k < want.size(); ++k) {
      worst_ref = std::max(worst_ref, std::fabs(double(g_out[k]) - want[k]));
      worst_cpu = std::max(worst_cpu, std::fabs(double(g_out[k]) - double(c_out[k])));
    }
    std::printf("    pair %zu: |gpu - fp64| = %.2e, |gpu - cpu| = %.2e\n", p, worst_ref, worst_cpu);
    CHECK_NEAR(worst_ref, 0.0, 1e-6);
    CHECK_NEAR(worst_cpu, 0.0, 2e-6);
  }
}

TEST(cpu_backend_is_forced_on_request) {
  ffm::CorrelationAccumulator cpu({4}, {{0, 0}}, ffm::CorrelationBackend::kCpu);
  CHECK(std::string(cpu.backend()) == "cpu");
}

TEST_MAIN()
