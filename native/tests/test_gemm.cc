// sgemm against a float64 reference: every kernel this CPU supports (forced with FFMERGE_GEMM_KERNEL) × the
// four transpose combinations × odd sizes, alpha/beta variants, padded leading dimensions, 1..3 threads.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_kernels.h"
#include "core/job.h"
#include "core/thread_pool.h"
#include "tests/check.h"

namespace {

struct Shape {
  size_t m, n, k;
};

// Sets FFMERGE_GEMM_KERNEL for the lifetime of the object (restores "unset" after).
struct ForceKernel {
  explicit ForceKernel(const std::string& name) { setenv("FFMERGE_GEMM_KERNEL", name.c_str(), 1); }
  ~ForceKernel() { unsetenv("FFMERGE_GEMM_KERNEL"); }
};

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Runs one sgemm on padded random operands and compares with float64; returns false (after printing) on the
// first bad element. Padding of C (columns past N) must survive untouched.
bool check_case(ffm::ThreadPool* pool, bool ta, bool tb, Shape s, float alpha, float beta, size_t pad, std::mt19937& rng,
                const char* label) {
  const size_t M = s.m, N = s.n, K = s.k;
  const size_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  const size_t a_rows = ta ? K : M, b_rows = tb ? N : K;
  std::vector<float> A = random_floats(a_rows * lda, rng), B = random_floats(b_rows * ldb, rng);
  std::vector<float> C0 = random_floats(M * ldc, rng);
  if (beta == 0.0f) {
    for (size_t i = 0; i < M; ++i)
      for (size_t j = 0; j < N; ++j) C0[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
  }
  const float canary = 12345.0f;
  for (size_t i = 0; i < M; ++i)
    for (size_t j = N; j < ldc; ++j) C0[i * ldc + j] = canary;
  std::vector<float> C = C0;
  ffm::sgemm(pool, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);

  for (size_t i = 0; i < M; ++i) {
    for (size_t j = 0; j < ldc; ++j) {
      const float got = C[i * ldc + j];
      if (j >= N) {
        if (got != canary) {
          std::printf("    %s: C padding (%zu,%zu) overwritten\n", label, i, j);
          return false;
        }
        continue;
      }
      double sum = 0, mag = 0;
      for (size_t k = 0; k < K; ++k) {
        const double a = ta ? A[k * lda + i] : A[i * lda + k];
        const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        sum += a * b;
        mag += std::fabs(a * b);
      }
      const double c0 = beta == 0.0f ? 0.0 : double(C0[i * ldc + j]);
      const double want = double(alpha) * sum + double(beta) * c0;
      // fp32 accumulation of K products: |error| ≲ K·eps·Σ|a·b|; 1e-6 ≈ 8 eps leaves room for the
      // alpha/beta update's own rounding.
      const double tol = 1e-6 * double(K + 4) * (std::fabs(alpha) * mag + std::fabs(beta) * std::fabs(c0)) + 1e-30;
      if (!(std::fabs(double(got) - want) <= tol)) {
        std::printf("    %s: ta=%d tb=%d M=%zu N=%zu K=%zu alpha=%g beta=%g pad=%zu: C(%zu,%zu)=%.9g want %.9g (tol %g)\n",
                    label, ta, tb, M, N, K, alpha, beta, pad, i, j, got, want, tol);
        return false;
      }
    }
  }
  return true;
}

const size_t kOdd[] = {1, 2, 3, 5, 7, 15, 17, 31, 33, 63, 65, 127, 129, 257};

// Small odd sizes exhaustively, bigger ones as a fixed pseudo-random sample of mixes, plus a few large ones.
std::vector<Shape> shapes() {
  std::vector<Shape> v;
  const size_t small[] = {1, 2, 3, 5, 7, 15, 17, 33};
  for (size_t m : small)
    for (size_t n : small)
      for (size_t k : small) v.push_back({m, n, k});
  std::mt19937 rng(7);
  for (int i = 0; i < 40; ++i) {
    v.push_back({kOdd[rng() % 14], kOdd[rng() % 14], kOdd[rng() % 14]});
  }
  v.push_back({300, 517, 259});
  // N past the unpacked-A limit (packed A), and short M with a B too big for unpacked reads (packed B) and
  // with M so short that B is read unpacked anyway.
  v.push_back({29, 1031, 37});
  v.push_back({131, 800, 70});
  v.push_back({20, 1100, 1000});
  v.push_back({3, 1100, 1000});
  v.push_back({257, 1, 513});
  v.push_back({1, 257, 600});
  v.push_back({129, 65, 1});
  return v;
}

void run_kernel(const std::string& kernel) {
  ForceKernel force(kernel);
  CHECK(ffm::sgemm_kernel_name() == kernel);
  ffm::ThreadPool pool(2);
  std::mt19937 rng(1234);
  const std::string label = "kernel " + kernel;
  size_t n = 0;
  for (const Shape& s : shapes()) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      // Cycle the alpha/beta/padding variants over the cases so each shows up with every transpose.
      const float alphas[] = {1.0f, -0.75f, 2.5f};
      const float betas[] = {0.0f, 1.0f, -0.5f, 0.0f};
      const float alpha = alphas[n % 3], beta = betas[(n / 3) % 4];
      const size_t pad = (n % 5 == 0) ? 0 : n % 7;
      ffm::ThreadPool* p = (n % 2) ? &pool : nullptr;
      ++n;
      CHECK(check_case(p, ta, tb, s, alpha, beta, pad, rng, label.c_str()));
    }
  }
}

}  // namespace

TEST(portable_kernel_matches_float64) { run_kernel("portable"); }

TEST(every_supported_simd_kernel_matches_float64) {
  const auto kernels = ffm::sgemm_supported_kernels();
  CHECK(!kernels.empty() && kernels.front() == "portable");
  for (const std::string& k : kernels) {
    if (k == "portable") continue;
    std::printf("    testing kernel %s\n", k.c_str());
    run_kernel(k);
  }
}

TEST(default_choice_is_the_best_supported_kernel) {
  unsetenv("FFMERGE_GEMM_KERNEL");
  CHECK(ffm::sgemm_kernel_name() == ffm::sgemm_supported_kernels().back());
#ifdef FFM_GEMM_X86  // a build with the SIMD kernels must pick AVX-512 where the CPU has it
  if (__builtin_cpu_supports("avx512f")) CHECK(ffm::sgemm_kernel_name() == "avx512");
#endif
}

TEST(large_multithreaded_shapes_match_float64) {
  std::mt19937 rng(99);
  for (unsigned threads : {2u, 3u}) {
    ffm::ThreadPool pool(threads);
    for (const std::string& k : ffm::sgemm_supported_kernels()) {
      ForceKernel force(k);
      for (int t = 0; t < 4; ++t) {
        CHECK(check_case(&pool, t & 1, t & 2, {301, 259, 517}, 1.0f, 0.0f, 3, rng, k.c_str()));
        CHECK(check_case(&pool, t & 1, t & 2, {17, 2063, 300}, -1.0f, 0.5f, 0, rng, k.c_str()));
      }
    }
  }
}

TEST(result_does_not_depend_on_thread_count) {
  // Stripes split C, never K, so every element sums in the same order: bitwise identical results.
  std::mt19937 rng(5);
  const size_t M = 203, N = 611, K = 700;
  auto A = random_floats(M * K, rng), B = random_floats(K * N, rng);
  std::vector<float> c1(M * N), c2(M * N), c3(M * N);
  ffm::ThreadPool p2(2), p3(3);
  ffm::sgemm(nullptr, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c1.data(), N);
  ffm::sgemm(&p2, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c2.data(), N);
  ffm::sgemm(&p3, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c3.data(), N);
  CHECK(c1 == c2);
  CHECK(c1 == c3);
  // 28 rows split in two stripes leave a last stripe of 4 rows, short enough for the short-M strategies
  // (thin K slices, dot products): they must be chosen for the whole call, not per stripe.
  for (bool tb : {false, true}) {
    const size_t m = 28, n = 64, k = 5000;  // more row tiles than column tiles: split over M
    auto a = random_floats(m * k, rng), b = random_floats(k * n, rng);
    std::vector<float> s1(m * n), s2(m * n);
    ffm::sgemm(nullptr, false, tb, m, n, k, 1.0f, a.data(), k, b.data(), tb ? k : n, 0.0f, s1.data(), n);
    ffm::sgemm(&p2, false, tb, m, n, k, 1.0f, a.data(), k, b.data(), tb ? k : n, 0.0f, s2.data(), n);
    CHECK(s1 == s2);
  }
}

TEST(concurrent_calls_sharing_one_pool_do_not_interfere) {
  // Several jobs may multiply at once on the addon's one pool: packing buffers are per call and per thread.
  std::mt19937 rng(11);
  ffm::ThreadPool pool(2);
  struct Job {
    size_t m, n, k;
    bool tb;
    std::vector<float> a, b, want, got;
  };
  std::vector<Job> jobs;
  for (auto [m, n, k, tb] : {std::tuple<size_t, size_t, size_t, bool>{150, 700, 90, false}, {3, 900, 400, true},
                            {260, 130, 301, false}, {97, 1030, 64, true}}) {
    Job j{m, n, k, tb, random_floats(m * k, rng), random_floats(k * n, rng), {}, {}};
    j.want.resize(m * n);
    j.got.resize(m * n);
    ffm::sgemm(nullptr, false, tb, m, n, k, 1.0f, j.a.data(), k, j.b.data(), tb ? k : n, 0.0f, j.want.data(), n);
    jobs.push_back(std::move(j));
  }
  std::vector<std::thread> threads;
  for (Job& j : jobs)
    threads.emplace_back([&pool, &j] {
      for (int rep = 0; rep < 3; ++rep)
        ffm::sgemm(&pool, false, j.tb, j.m, j.n, j.k, 1.0f, j.a.data(), j.k, j.b.data(), j.tb ? j.k : j.n, 0.0f,
                   j.got.data(), j.n);
    });
  for (auto& t : threads) t.join();
  for (const Job& j : jobs) CHECK(j.got == j.want);
}

// A product inside a CancelScope stops at the scope's cancel flag (a forward pass's layer answers an abort
// within a block); outside any scope, or once the scope has ended, the same flag is not read.
TEST(sgemm_stops_on_the_cancel_flag_of_its_scope) {
  std::mt19937 rng(11);
  ffm::ThreadPool pool(3);
  const size_t M = 301, N = 157, K = 263;
  auto A = random_floats(M * K, rng), B = random_floats(K * N, rng);
  std::vector<float> C(M * N), want(M * N);
  ffm::sgemm(&pool, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, want.data(), N);
  ffm::JobControl ctl(pool);
  ctl.cancel();
  for (ffm::ThreadPool* p : {static_cast<ffm::ThreadPool*>(nullptr), &pool}) {
    bool cancelled = false;
    {
      const ffm::CancelScope scope(ctl);
      CHECK(ffm::CancelScope::current() == &ctl);
      try {
        ffm::sgemm(p, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
      } catch (const ffm::Cancelled&) {
        cancelled = true;
      }
    }
    CHECK(cancelled);
    CHECK(ffm::CancelScope::current() == nullptr);
    ffm::sgemm(p, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
    CHECK(C == want);
  }
  // 16-bit weights too
  std::vector<uint16_t> Bh(N * K, 0x3c00);  // 1.0 in F16
  const ffm::CancelScope scope(ctl);
  bool cancelled = false;
  try {
    ffm::sgemm_bt16(&pool, false, M, N, K, 1.0f, A.data(), K, Bh.data(), ffm::Half::F16, K, 0.0f, C.data(), N);
  } catch (const ffm::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled);
}

TEST(k_zero_and_alpha_zero_scale_c_without_reading_a_or_b) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> A(6 * 4, nan), B(4 * 5, nan);
  for (float beta : {0.0f, 1.0f, -2.0f}) {
    std::vector<float> C(3 * 5);
    for (size_t i = 0; i < C.size(); ++i) C[i] = beta == 0.0f ? nan : float(i);
    // K = 0: C = beta·C.
    ffm::sgemm(nullptr, false, false, 3, 5, 0, 1.0f, A.data(), 1, B.data(), 5, beta, C.data(), 5);
    for (size_t i = 0; i < C.size(); ++i) CHECK(C[i] == (beta == 0.0f ? 0.0f : beta * float(i)));
    // alpha = 0: A and B (all NaN here) are not read.
    for (size_t i = 0; i < C.size(); ++i) C[i] = beta == 0.0f ? nan : float(i);
    ffm::sgemm(nullptr, true, true, 3, 5, 4, 0.0f, A.data(), 3, B.data(), 4, beta, C.data(), 5);
    for (size_t i = 0; i < C.size(); ++i) CHECK(C[i] == (beta == 0.0f ? 0.0f : beta * float(i)));
  }
  // M or N = 0: nothing to do, nothing touched.
  std::vector<float> C(4, 7.0f);
  ffm::sgemm(nullptr, false, false, 0, 4, 3, 1.0f, A.data(), 3, B.data(), 4, 0.0f, C.data(), 4);
  ffm::sgemm(nullptr, false, false, 1, 0, 3, 1.0f, A.data(), 3, B.data(), 4, 0.0f, C.data(), 4);
  for (float c : C) CHECK(c == 7.0f);
}

TEST(bad_kernel_names_are_typed_errors) {
  std::vector<float> A(4, 1.0f), B(4, 1.0f), C(4, 0.0f);
  for (const char* name : {"sse9", "AVX2"}) {
    ForceKernel force(name);
    std::string code;
    try {
      ffm::sgemm(nullptr, false, false, 2, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(), 2);
    } catch (const ffm::Error& e) {
      code = e.code();
      CHECK(std::string(e.what()).find("FFMERGE_GEMM_KERNEL") != std::string::npos);
    }
    CHECK(code == "INVALID_ARGUMENT");
    CHECK(ffm::sgemm_kernel_name().rfind("invalid", 0) == 0);
  }
  {
    // An explicit kernel wins over the environment.
    ForceKernel force("sse9");
    ffm::sgemm_with_kernel("portable", nullptr, false, false, 2, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(), 2);
    CHECK(C[0] == 2.0f && C[3] == 2.0f);
    std::string code;
    try {
      ffm::sgemm_with_kernel("neon", nullptr, false, false, 2, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(), 2);
    } catch (const ffm::Error& e) {
      code = e.code();
    }
    CHECK(code == "INVALID_ARGUMENT");
  }
  ForceKernel force("auto");
  CHECK(ffm::sgemm_kernel_name() == ffm::sgemm_supported_kernels().back());
}

TEST_MAIN()
