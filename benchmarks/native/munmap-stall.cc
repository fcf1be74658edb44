// How long one large free elsewhere in the process holds a small mmap (reaper.h says why it matters): one
// thread frees a touched 2 GB mapping, by one munmap or (with an argument) by madvise(MADV_DONTNEED) 32 MB at a
// time first, as ffm::release_pages (native/core/large_buffer.cc) does; the main thread meanwhile maps, touches and unmaps 8 MB in a
// loop and reports its slowest round.
//
//   g++ -O2 -pthread benchmarks/native/munmap-stall.cc -o /tmp/munmap-stall
//   /tmp/munmap-stall            # one munmap
//   /tmp/munmap-stall sliced     # released in slices first
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

using Clock = std::chrono::steady_clock;

static double Ms(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

int main(int argc, char** argv) {
  const bool sliced = argc > 1;
  const size_t big = size_t(2) << 30, slice = size_t(32) << 20, small = size_t(8) << 20;
  char* p = static_cast<char*>(mmap(nullptr, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED) return 1;
  std::memset(p, 1, big);
  std::atomic<bool> go{false}, done{false};
  double free_ms = 0;
  std::thread freer([&] {
    while (!go) {
    }
    const auto t0 = Clock::now();
    if (sliced)
      for (size_t o = 0; o < big; o += slice) madvise(p + o, slice, MADV_DONTNEED);
    munmap(p, big);
    free_ms = Ms(t0);
    done = true;
  });
  double worst = 0;
  go = true;
  while (!done) {
    const auto t0 = Clock::now();
    char* q = static_cast<char*>(mmap(nullptr, small, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    std::memset(q, 1, small);
    munmap(q, small);
    worst = std::max(worst, Ms(t0));
  }
  freer.join();
  std::printf("%s: the 2 GB free took %.1f ms; slowest 8 MB map + touch + unmap meanwhile: %.1f ms\n",
              sliced ? "sliced madvise, then munmap" : "one munmap", free_ms, worst);
}
