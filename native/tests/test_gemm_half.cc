// sgemm_bt16 (B stored F16/BF16, transposed) against a float64 reference on random inputs of odd sizes, for
// every kernel this CPU supports, both A layouts, short M (the rows-dot path) and long M (packing), 1..3
// threads, alpha/beta variants and padded leading dimensions; and bit-for-bit against sgemm on the widened B.
// The 16-bit conversions themselves are checked exhaustively.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/gemm.h"
#include "core/gemm_kernels.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "tests/check.h"

namespace {

using ffm::Half;

// binary16 → double from the definition (sign · 2^(e-15) · 1.f, subnormals 2^-14 · 0.f).
double f16_reference(uint16_t h) {
  const int s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e == 0) return s * std::ldexp(double(f), -24);
  if (e == 31) return f ? std::numeric_limits<double>::quiet_NaN() : s * std::numeric_limits<double>::infinity();
  return s * std::ldexp(1.0 + f / 1024.0, e - 15);
}

// Random 16-bit weights: bit patterns of uniform(-1, 1) values (rounded from float32), so no inf/NaN.
std::vector<uint16_t> random_half(size_t n, Half t, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) {
    const float f = d(rng);
    if (t == Half::BF16) {
      x = ffm::f32_to_bf16(f);
    } else {
      // exact for |f| ≥ 2^-14 to 10 bits: truncate the float32 mantissa (any value in range is a valid test)
      uint32_t b;
      std::memcpy(&b, &f, 4);
      const int e = int((b >> 23) & 0xff) - 127;
      x = e < -14 ? uint16_t((b >> 16) & 0x8000) : uint16_t(((b >> 16) & 0x8000) | ((e + 15) << 10) | ((b >> 13) & 0x3ff));
    }
  }
  return v;
}

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

bool check_case(ffm::ThreadPool* pool, const char* kernel, Half type, bool ta, size_t M, size_t N, size_t K,
                float alpha, float beta, size_t pad, std::mt19937& rng) {
  const char* kernel_name = kernel ? kernel : "auto";  // printf's %s of a null pointer is undefined (tester EK)
  const size_t lda = (ta ? M : K) + pad, ldb = K + pad, ldc = N + pad;
  std::vector<float> A = random_floats((ta ? K : M) * lda, rng);
  std::vector<uint16_t> B = random_half(N * ldb, type, rng);
  std::vector<float> C0 = random_floats(M * ldc, rng);
  if (beta == 0.0f)
    for (size_t i = 0; i < M; ++i)
      for (size_t j = 0; j < N; ++j) C0[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
  for (size_t i = 0; i < M; ++i)
    for (size_t j = N; j < ldc; ++j) C0[i * ldc + j] = 777.0f;
  std::vector<float> C = C0, Cw = C0, Bw(B.size());
  for (size_t i = 0; i < B.size(); ++i) Bw[i] = ffm::half_to_f32(type, B[i]);
  ffm::sgemm_bt16(pool, ta, M, N, K, alpha, A.data(), lda, B.data(), type, ldb, beta, C.data(), ldc, kernel);
  ffm::sgemm_with_kernel(kernel, pool, ta, true, M, N, K, alpha, A.data(), lda, Bw.data(), ldb, beta, Cw.data(), ldc);
  for (size_t i = 0; i < M; ++i) {
    for (size_t j = 0; j < ldc; ++j) {
      const float got = C[i * ldc + j];
      if (j >= N) {
        if (got != 777.0f) return std::printf("    padding of C overwritten at (%zu,%zu)\n", i, j), false;
        continue;
      }
      double ref = 0, mag = 0;
      for (size_t k = 0; k < K; ++k) {
        const double a = ta ? A[k * lda + i] : A[i * lda + k];
        const double b = type == Half::BF16 ? double(ffm::bf16_to_f32(B[j * ldb + k])) : f16_reference(B[j * ldb + k]);
        ref += a * b;
        mag += std::fabs(a * b);
      }
      ref = alpha * ref + (beta == 0.0f ? 0.0 : beta * double(C0[i * ldc + j]));
      const double tol = 1e-5 * (std::fabs(alpha) * mag + (beta == 0.0f ? 0.0 : std::fabs(beta * C0[i * ldc + j]))) + 1e-6;
      if (!(std::fabs(got - ref) <= tol)) {
        std::printf("    %s %s ta=%d %zux%zux%zu: C(%zu,%zu)=%g ref %g (tol %g)\n", kernel_name,
                    type == Half::BF16 ? "bf16" : "f16", int(ta), M, N, K, i, j, got, ref, tol);
        return false;
      }
      uint32_t g, w;
      std::memcpy(&g, &got, 4);
      std::memcpy(&w, &Cw[i * ldc + j], 4);
      if (g != w) {
        std::printf("    %s: C(%zu,%zu)=%a differs from sgemm on the widened B (%a)\n", kernel_name, i, j, got, Cw[i * ldc + j]);
        return false;
      }
    }
  }
  return true;
}

}  // namespace

TEST(f16_and_bf16_widen_exactly_for_every_bit_pattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double want = f16_reference(uint16_t(h));
    const float got = ffm::f16_to_f32(uint16_t(h));
    if (std::isnan(want)) CHECK(std::isnan(got));
    else CHECK(double(got) == want);
    uint32_t bits;
    const float b = ffm::bf16_to_f32(uint16_t(h));
    std::memcpy(&bits, &b, 4);
    CHECK(bits == h << 16);
  }
  // vector form = scalar form
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = uint16_t(h);
  std::vector<float> wide(65536);
  ffm::half_to_f32(Half::F16, all.data(), wide.data(), all.size());
  for (uint32_t h = 0; h < 65536; ++h) {
    const float s = ffm::f16_to_f32(uint16_t(h));
    CHECK(std::memcmp(&s, &wide[h], 4) == 0);
  }
}

TEST(f32_to_bf16_rounds_to_nearest_even) {
  auto bits = [](uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return ffm::f32_to_bf16(f);
  };
  CHECK(bits(0x3f808000u) == 0x3f80);  // tie, even below
  CHECK(bits(0x3f818000u) == 0x3f82);  // tie, odd below → up
  CHECK(bits(0x3f808001u) == 0x3f81);
  CHECK(bits(0x7fc00001u) == 0x7fc0);  // NaN stays NaN
  CHECK(bits(0x7f7fffffu) == 0x7f80);  // rounds up to inf, as torch does
}

TEST(every_kernel_matches_float64_and_sgemm_on_the_widened_weights) {
  std::mt19937 rng(7);
  ffm::ThreadPool pool(3);
  const size_t shapes[][3] = {{1, 1, 1}, {1, 37, 53}, {3, 29, 71}, {4, 17, 300}, {5, 33, 19}, {7, 1, 9},
                              {17, 45, 129}, {64, 31, 257}, {131, 67, 45}, {200, 150, 513}};
  for (const std::string& kernel : ffm::sgemm_supported_kernels())
    for (Half type : {Half::BF16, Half::F16})
      for (bool ta : {false, true})
        for (const auto& s : shapes)
          for (ffm::ThreadPool* p : {static_cast<ffm::ThreadPool*>(nullptr), &pool}) {
            CHECK(check_case(p, kernel.c_str(), type, ta, s[0], s[1], s[2], 1.0f, 0.0f, 0, rng));
            CHECK(check_case(p, kernel.c_str(), type, ta, s[0], s[1], s[2], -0.5f, 0.75f, 3, rng));
          }
}

TEST(large_multithreaded_shapes_split_over_n_and_m) {
  std::mt19937 rng(11);
  ffm::ThreadPool pool(3);
  // wide N (split over columns, B offset in 16-bit elements) and tall M (split over rows)
  CHECK(check_case(&pool, nullptr, Half::BF16, false, 9, 1500, 300, 1.0f, 0.0f, 0, rng));
  CHECK(check_case(&pool, nullptr, Half::F16, false, 700, 90, 260, 1.0f, 0.0f, 1, rng));
  CHECK(check_case(&pool, nullptr, Half::BF16, false, 2, 3001, 77, 1.0f, 0.0f, 0, rng));
}

TEST_MAIN()
