#include "core/large_buffer.h"

#include "core/error.h"

#include <algorithm>
#include <cstdint>

#if defined(__linux__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace ffm {

void release_pages(const void* data, size_t bytes) {
#if defined(__linux__) || defined(__APPLE__)
  constexpr size_t kMin = size_t(16) << 20;    // a smaller free is quick anyway
  constexpr size_t kSlice = size_t(32) << 20;  // ~3 ms of the lock each on this VM
  if (!data || bytes < kMin) return;
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  // inward to whole pages: the allocator's bookkeeping just outside the span is never touched
  uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  for (; begin < end; begin += kSlice) madvise(reinterpret_cast<void*>(begin), std::min<uintptr_t>(kSlice, end - begin), MADV_DONTNEED);
#else
  (void)data;
  (void)bytes;
#endif
}

void check_fits_in_memory(double bytes, const std::string& what) {
#if defined(__linux__) || defined(__APPLE__)
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return;
  const double physical = double(pages) * double(page);
  if (bytes > physical)
    throw Error("OUT_OF_MEMORY", what + " would need " + std::to_string(static_cast<long long>(bytes / (1 << 20))) +
                                     " MiB, more than this machine's " +
                                     std::to_string(static_cast<long long>(physical / (1 << 20))) + " MiB of memory");
#else
  (void)bytes;
  (void)what;
#endif
}

}  // namespace ffm
