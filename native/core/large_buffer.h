// Large memory handed back to the kernel a slice at a time before it is freed.
//
// Why: one munmap of a large mapping holds the process's memory-map lock for its whole length, and every mmap
// meanwhile waits for it — V8 growing its heap on the host's main thread, a new ArrayBuffer, a large malloc.
// Releasing the pages first by madvise, 32 MB at a time, cuts that wait from hundreds of ms to a few for a
// 2 GB buffer (benchmarks/native/munmap-stall.cc); at 7B width the fits' temporaries are that large.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace ffm {

// Gives the whole pages inside [data, data + bytes) back to the kernel (madvise MADV_DONTNEED) a slice at a
// time, so that the free that follows unmaps nothing and no slice holds the memory-map lock long. The memory
// reads as zeros afterwards: only for memory about to be freed that nothing else reads. Spans under 16 MiB are
// left to the free. A no-op where madvise is not available.
void release_pages(const void* data, size_t bytes);

// Throws OUT_OF_MEMORY when `bytes` is more than the machine's physical memory. Linux overcommits: a request
// that large is granted, and the process is killed (OOM) once the memory is touched, with no error to report.
// A request in double, so a product of sizes given by a caller cannot wrap. No check where the size is unknown.
void check_fits_in_memory(double bytes, const std::string& what);

// std::allocator, except that a block's pages are released (release_pages) just before it is freed.
template <typename T>
struct PageReleasingAllocator : std::allocator<T> {
  using value_type = T;
  template <typename U>
  struct rebind {
    using other = PageReleasingAllocator<U>;
  };
  PageReleasingAllocator() = default;
  template <typename U>
  PageReleasingAllocator(const PageReleasingAllocator<U>&) noexcept {}
  void deallocate(T* p, size_t n) {
    release_pages(p, n * sizeof(T));
    std::allocator<T>::deallocate(p, n);
  }
};

template <typename T, typename U>
bool operator==(const PageReleasingAllocator<T>&, const PageReleasingAllocator<U>&) noexcept {
  return true;
}
template <typename T, typename U>
bool operator!=(const PageReleasingAllocator<T>&, const PageReleasingAllocator<U>&) noexcept {
  return false;
}

// A vector for buffers of hundreds of MB that may be freed while the host runs.
template <typename T>
using LargeVector = std::vector<T, PageReleasingAllocator<T>>;

}  // namespace ffm
