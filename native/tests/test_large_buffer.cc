// release_pages gives back only whole pages inside the span, and a LargeVector keeps its values through the
// reallocations that free (and so release) its old blocks.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/large_buffer.h"
#include "tests/check.h"

namespace {

constexpr size_t kMiB = size_t(1) << 20;

}  // namespace

TEST(release_pages_zeroes_only_whole_pages_inside_the_span) {
  const size_t bytes = 40 * kMiB + 12345;
  std::vector<unsigned char> v(bytes + 8192, 0xAB);
  unsigned char* start = v.data() + 4097;  // not page-aligned at either end
  ffm::release_pages(start, bytes);
#if defined(__linux__)  // MADV_DONTNEED zero-fills anonymous pages on Linux; elsewhere it is only advice
  // the bytes before the first whole page and after the last are the caller's neighbours: untouched
  CHECK(v[0] == 0xAB && start[0] == 0xAB);
  CHECK(start[bytes - 1] == 0xAB && v.back() == 0xAB);
  size_t zeros = 0;
  for (size_t i = 0; i < bytes; ++i) zeros += start[i] == 0;
  CHECK(zeros >= bytes - 2 * 4096 * 16);  // all but the partial pages (pages up to 64 KiB)
  for (size_t i = bytes; i < v.size() - 4097; ++i) CHECK(start[i] == 0xAB);
#endif
}

TEST(release_pages_leaves_small_spans_to_the_free) {
  std::vector<unsigned char> v(15 * kMiB, 0x5C);
  ffm::release_pages(v.data(), v.size());
  for (unsigned char c : v) CHECK(c == 0x5C);
  ffm::release_pages(nullptr, 64 * kMiB);  // nothing to release: no crash
}

TEST(large_vector_keeps_its_values_through_reallocations) {
  ffm::LargeVector<double> v;
  for (size_t i = 0; i < 5 * kMiB; ++i) v.push_back(double(i) * 0.5 + 1.0);  // several 16+ MiB blocks freed
  for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == double(i) * 0.5 + 1.0);
  ffm::LargeVector<double> w(v.begin(), v.end());
  w.resize(w.size() * 2 + 7, -3.0);
  for (size_t i = 0; i < v.size(); ++i) CHECK(w[i] == v[i]);
  for (size_t i = v.size(); i < w.size(); ++i) CHECK(w[i] == -3.0);
  ffm::LargeVector<double>().swap(v);
  CHECK(v.capacity() == 0);
}

TEST_MAIN()
