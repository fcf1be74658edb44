// 16-bit floats as checkpoints store them (IEEE binary16 "F16" and bfloat16 "BF16"), and their exact
// conversion to float32. Weights stored 16-bit stay 16-bit in memory (half the bytes of float32) and are
// widened where they are used: while GEMM packs its B operand, and row by row for embedding lookups.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ffm {

enum class Half : uint8_t { F16, BF16 };

inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;  // bfloat16 is the top half of a float32: exact
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Exact for every binary16 value: normals rebias the exponent, subnormals are normalised, inf/NaN keep their
// payload (NaN stays NaN).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    // subnormal: value = man · 2^-24; shift the leading 1 up to bit 10
    int e = -1;
    do {
      man <<= 1;
      ++e;
    } while ((man & 0x400u) == 0);
    bits = sign | (uint32_t(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float half_to_f32(Half t, uint16_t h) { return t == Half::BF16 ? bf16_to_f32(h) : f16_to_f32(h); }

// dst[i] = float(src[i]) for i < n. The BF16 loop is a shift the compiler vectorises.
inline void half_to_f32(Half t, const uint16_t* src, float* dst, size_t n) {
  if (t == Half::BF16) {
    for (size_t i = 0; i < n; ++i) {
      const uint32_t bits = uint32_t(src[i]) << 16;
      std::memcpy(dst + i, &bits, 4);
    }
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
  }
}

// Round to nearest even (as torch's .to(torch.bfloat16) and the writer in lib/safetensors/dtype.ts do); NaN
// stays a quiet NaN. For tests and for reference weights.
inline uint16_t f32_to_bf16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return uint16_t((b >> 16) | 0x40u);
  b += 0x7fffu + ((b >> 16) & 1u);
  return uint16_t(b >> 16);
}

}  // namespace ffm
