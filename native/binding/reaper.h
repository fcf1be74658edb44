// Drops the last reference to large native memory on a thread of its own.
//
// Why: freeing is not free. Unmapping 1 GB of touched pages takes this VM about 110 ms, and the last
// reference to a model view's FF copies, a NativeFF pool (3.2 GB at Llama-2-7B width, k = 9), least-squares
// or correlation sums (1 GB each there) or a job's result array is usually dropped on the main thread: in
// dispose(), or in a finalizer after a garbage collection. At 7B width those frees held the host's event
// loop 100–200 ms at a time. The reaper takes the reference instead and lets go of it there.
//
// One per addon instance (AddonData), one thread, so a server never gets more than one of them per instance;
// shared (shared_ptr) so that a finalizer running late in the environment's teardown still has it. Its
// destructor frees whatever is queued, then joins.
#pragma once
#include <napi.h>

#include <condition_variable>
#include <deque>
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
  void Drop(std::shared_ptr<const void> p);

 private:
  void Loop();
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<const void>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

// This instance's reaper.
std::shared_ptr<Reaper> ReaperOf(Napi::Env env);

}  // namespace ffm::binding
