// A fixed-size pool of worker threads with a fork-join parallel_for.
//
// One pool is owned by each addon instance (not a global), sized once, and shared by every job of that
// instance: a server running several jobs at once gets at most `size()` compute threads in total instead of
// jobs × cores. The calling thread always takes part in its own parallel_for, so a job makes progress even
// when every worker is busy with other jobs, and nested parallel_for calls cannot deadlock.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ffm {

// Lowers the calling thread's priority a little (nice +5 on Linux; a no-op elsewhere): for ffmerge's own
// background threads, so that a host's threads get a core first (thread_pool.cc says why).
void lower_this_thread_priority();

class ThreadPool {
 public:
  // threads = total compute threads including the caller; 0 picks std::thread::hardware_concurrency().
  explicit ThreadPool(unsigned threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return size_; }

  // Calls fn(begin, end) on disjoint chunks covering [0, n). `grain` is the smallest chunk worth a
  // thread. Blocks until every chunk is done; the first exception thrown by fn is rethrown here.
  void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

 private:
  void worker_loop();
  unsigned size_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
};

}  // namespace ffm
