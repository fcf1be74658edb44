#include "core/job_runner.h"

#include <algorithm>
#include <utility>

#include "core/thread_pool.h"

namespace ffm {

JobRunner::JobRunner(unsigned threads) : max_threads_(std::max(1u, threads)) {}

JobRunner::~JobRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

uint64_t JobRunner::post(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t ticket = next_ticket_++;
  queue_.push_back({ticket, std::move(task)});
  // A thread more when the tasks waiting outnumber the idle threads and the bound allows (an instance that
  // never runs a job starts none). Counting the queue, not just idle_ == 0: two posts in a row while one thread
  // is idle but not yet awake would otherwise leave the second task waiting behind the first one's run.
  if (queue_.size() > idle_ && threads_.size() < max_threads_) {
    threads_.emplace_back([this] { loop(); });
  } else {
    cv_.notify_one();
  }
  return ticket;
}

std::function<void()> JobRunner::withdraw(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(queue_.begin(), queue_.end(), [ticket](const Queued& q) { return q.ticket == ticket; });
  if (it == queue_.end()) return {};
  std::function<void()> task = std::move(it->task);
  queue_.erase(it);
  return task;
}

void JobRunner::loop() {
  // A job's thread computes too (it is the caller of the pool's parallel_for), so it runs at the pool's lower
  // priority: under contention the host's threads, the JS event loop first, get a core before it.
  lower_this_thread_priority();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    ++idle_;
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    --idle_;
    if (queue_.empty()) return;  // stopping, and everything queued has run
    std::function<void()> task = std::move(queue_.front().task);
    queue_.pop_front();
    lock.unlock();
    task();
    task = nullptr;  // what the task held goes now, on this thread, not under the lock
    lock.lock();
  }
}

}  // namespace ffm
