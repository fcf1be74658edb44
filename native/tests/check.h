// The standalone harness's few assertion macros (no test framework: the core must build and test with
// nothing but a compiler). Each test_*.cc is one executable; a failed CHECK prints and exits non-zero.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace ffm_test {

struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
struct Add {
  Add(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); }
};
inline int& failures() {
  static int f = 0;
  return f;
}

inline int run_all() {
  int passed = 0, failed = 0;
  for (auto& c : cases()) {
    int before = failures();
    c.fn();
    if (failures() == before) {
      ++passed;
      std::printf("  ok   %s\n", c.name);
    } else {
      ++failed;
      std::printf("  FAIL %s\n", c.name);
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace ffm_test

#define TEST_CAT2(a, b) a##b
#define TEST_CAT(a, b) TEST_CAT2(a, b)
#define TEST(name)                                                          \
  static void name();                                                       \
  static ffm_test::Add TEST_CAT(add_, name)(#name, name);                   \
  static void name()
#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::printf("    %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);       \
      ++ffm_test::failures();                                                        \
      return;                                                                        \
    }                                                                                \
  } while (0)
#define CHECK_NEAR(a, b, tol)                                                                              \
  do {                                                                                                     \
    double va_ = (a), vb_ = (b);                                                                           \
    if (!(std::fabs(va_ - vb_) <= (tol))) {                                                                \
      std::printf("    %s:%d: %s=%g vs %s=%g (tol %g)\n", __FILE__, __LINE__, #a, va_, #b, vb_, double(tol)); \
      ++ffm_test::failures();                                                                              \
      return;                                                                                              \
    }                                                                                                      \
  } while (0)
#define TEST_MAIN() \
  int main() { return ffm_test::run_all(); }
