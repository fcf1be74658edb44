// splitmix64: a seeded, platform-independent stream for the trainers' data draws (no global RNG state).
#pragma once
#include <cstddef>
#include <cstdint>

namespace ffm::train {

struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return size_t(next() % n); }
};

}  // namespace ffm::train
