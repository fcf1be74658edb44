#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <exception>
#include <memory>

#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace ffm {

namespace {
// The pool's own threads run a little below normal priority: when the cores are contended, a host's threads
// (the JS event loop of a server embedding ffmerge above all) get a core first, and on an idle machine the
// pool loses nothing. Linux sets nice per thread; elsewhere this is a no-op. Raising nice needs no
// privilege; failure (e.g. a sandbox forbidding it) only leaves the default priority.
constexpr int kPoolNice = 5;
}  // namespace

void lower_this_thread_priority() {
#if defined(__linux__)
  const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, tid);
  if (errno == 0) (void)setpriority(PRIO_PROCESS, tid, std::min(19, now + kPoolNice));
#endif
}

ThreadPool::ThreadPool(unsigned threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  size_ = threads;
  // The caller of parallel_for is the size_-th thread.
  for (unsigned i = 1; i < size_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop() {
  lower_this_thread_priority();
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

namespace {
// Shared by the caller and the helpers of one parallel_for. Helpers may start after the caller has
// already finished every chunk, so the state lives in a shared_ptr they hold.
struct ForState {
  size_t n = 0, chunk = 1, nchunks = 0;
  std::atomic<size_t> next{0};
  std::atomic<size_t> finished{0};
  std::mutex mu;
  std::condition_variable done_cv;
  std::exception_ptr error;
  const std::function<void(size_t, size_t)>* fn = nullptr;

  // Runs chunks until none are left. Returns when this thread can take no more.
  void drain() {
    for (;;) {
      size_t c = next.fetch_add(1);
      if (c >= nchunks) return;
      size_t b = c * chunk, e = std::min(n, b + chunk);
      try {
        (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
      }
      if (finished.fetch_add(1) + 1 == nchunks) {
        std::lock_guard<std::mutex> lock(mu);
        done_cv.notify_all();
      }
    }
  }
};
}  // namespace

void ThreadPool::parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(1, grain);
  size_t max_chunks = (n + grain - 1) / grain;
  // A few chunks per thread balance uneven work without much scheduling overhead.
  size_t want = std::min<size_t>(max_chunks, size_t(size_) * 4);
  if (size_ == 1 || want <= 1) {
    fn(0, n);
    return;
  }
  auto st = std::make_shared<ForState>();
  st->n = n;
  st->chunk = (n + want - 1) / want;
  st->nchunks = (n + st->chunk - 1) / st->chunk;
  st->fn = &fn;
  size_t helpers = std::min<size_t>(size_ - 1, st->nchunks - 1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < helpers; ++i) queue_.emplace_back([st] { st->drain(); });
  }
  if (helpers == 1) cv_.notify_one(); else cv_.notify_all();
  st->drain();
  {
    std::unique_lock<std::mutex> lock(st->mu);
    st->done_cv.wait(lock, [&] { return st->finished.load() == st->nchunks; });
  }
  // fn may be gone after we return: helpers that start late see next >= nchunks and never touch it.
  if (st->error) std::rethrow_exception(st->error);
}

}  // namespace ffm
