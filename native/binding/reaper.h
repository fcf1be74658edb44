// Drops the last reference to large native memory on a thread of its own.
//
// Why: freeing is not free (about 100 ms per GB of touched pages), and the last reference to a model view's
// FF copies, a NativeFF pool, least-squares or correlation sums (GBs at 7B width) or a job's result array is
// usually dropped on the main thread: in dispose(), or in a finalizer after a garbage collection. The reaper
// takes the reference instead and lets go of it there.
//
// Freeing off the main thread is not enough on its own: one large munmap stalls every mmap in the process
// (core/large_buffer.h says how much). So Drop takes, with the reference, a way to release the pages that
// reference alone owns (release_pages), which the reaper runs before the free.
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

#include "core/large_buffer.h"

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
  // reference: it hands back (release_pages) the memory that only p's object owns.
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

// release_pages for the buffer of a vector the dropped reference alone owns.
template <typename V>
std::function<void()> PagesOf(const V* v) {
  return [v] { release_pages(v->data(), v->size() * sizeof(typename V::value_type)); };
}

}  // namespace ffm::binding
