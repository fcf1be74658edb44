// Drops the last reference to large native memory on a thread of its own.
//
// Why: freeing is not free. Unmapping 1 GB of touched pages takes this VM about 110 ms, and the last
// reference to a model view's FF copies, a NativeFF pool (3.2 GB at Llama-2-7B width, k = 9), least-squares
// or correlation sums (1 GB each there) or a job's result array is usually dropped on the main thread: in
// dispose(), or in a finalizer after a garbage collection. At 7B width those frees held the host's event
// loop 100–200 ms at a time. The reaper takes the reference instead and lets go of it there.
//
// Freeing off the main thread is not enough on its own: one munmap of a large mapping holds the process's
// memory-map lock for its whole length, and every mmap meanwhile waits for it: V8's collector growing or
// shrinking its heap, malloc of a large block, a new ArrayBuffer. A 2 GB free on another thread held an 8 MB
// mmap 189–228 ms; released first with madvise 32 MB at a time, 4.5–5.5 ms (benchmarks/native/munmap-stall.cc). So Drop takes, with the reference,
// a way to release the pages that reference alone owns (ReleasePages), which the reaper runs before the free.
//
// One per addon instance (AddonData), one thread, so a server never gets more than one of them per instance;
// shared (shared_ptr) so that a finalizer running late in the environment's teardown still has it. Its
// destructor frees whatever is queued, then joins.
#pragma once
#include <napi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace ffm::binding {

class Reaper {
 public:
  Reaper();
  ~Reaper();
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  // Takes p over: when it is the last reference, what it owns is freed on the reaper's thread; otherwise
  // the reference is simply dropped here. Safe from any thread, and in finalizers (it calls nothing in JS).
  // release_pages, when given, runs on the reaper's thread just before the free, while p is still the last
  // reference: it hands back (ReleasePages) the memory that only p's object owns.
  void Drop(std::shared_ptr<const void> p, std::function<void()> release_pages = {});

 private:
  struct Item {
    std::shared_ptr<const void> p;
    std::function<void()> release_pages;
  };
  void Loop();
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> queue_;
  bool stop_ = false;
  std::thread thread_;
};

// This instance's reaper.
std::shared_ptr<Reaper> ReaperOf(Napi::Env env);

// Gives the whole pages inside [data, data + bytes) back to the kernel (madvise MADV_DONTNEED) a slice at a
// time, so that the free that follows unmaps nothing and no slice holds the memory-map lock long. The memory
// reads as zeros afterwards: only for memory about to be freed that nothing else reads. Small spans are left
// to the free. A no-op where madvise is not available.
void ReleasePages(const void* data, size_t bytes);

// release_pages for the buffer of a vector the dropped reference alone owns.
template <typename V>
std::function<void()> PagesOf(const V* v) {
  return [v] { ReleasePages(v->data(), v->size() * sizeof(typename V::value_type)); };
}

}  // namespace ffm::binding
