#include <atomic>
#include <stdexcept>

#include "core/thread_pool.h"
#include "tests/check.h"

TEST(covers_every_index_once) {
  ffm::ThreadPool pool(4);
  for (size_t n : {1u, 2u, 7u, 1000u, 100003u}) {
    std::vector<std::atomic<int>> hits(n);
    pool.parallel_for(n, 3, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) hits[i]++;
    });
    for (size_t i = 0; i < n; ++i) CHECK(hits[i].load() == 1);
  }
}

TEST(rethrows_first_exception) {
  ffm::ThreadPool pool(3);
  bool threw = false;
  try {
    pool.parallel_for(100, 1, [&](size_t b, size_t e) {
      if (b <= 42 && 42 < e) throw std::runtime_error("boom");
    });
  } catch (const std::runtime_error&) {
    threw = true;
  }
  CHECK(threw);
}

TEST(nested_parallel_for_does_not_deadlock) {
  ffm::ThreadPool pool(2);
  std::atomic<long> sum{0};
  pool.parallel_for(8, 1, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i)
      pool.parallel_for(100, 1, [&](size_t b2, size_t e2) { sum += long(e2 - b2); });
  });
  CHECK(sum.load() == 800);
}

TEST_MAIN()
