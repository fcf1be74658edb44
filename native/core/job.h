// What a long-running core routine gets from whoever started it: a thread pool to compute on, a cancel
// flag to poll, and a progress sink. Plain C++: the binding layer adapts it to Node (AbortSignal,
// progress callbacks), the standalone tests use it directly.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"

namespace ffm {

class JobControl {
 public:
  using ProgressFn = std::function<void(double done, double total)>;

  explicit JobControl(ThreadPool& pool, ProgressFn progress = {},
                      std::shared_ptr<std::atomic<bool>> cancel_flag = std::make_shared<std::atomic<bool>>(false))
      : pool_(pool), progress_(std::move(progress)), cancel_(std::move(cancel_flag)) {}

  ThreadPool& pool() const { return pool_; }

  bool cancelled() const { return cancel_->load(std::memory_order_relaxed); }
  // Call at natural checkpoints (per batch, per layer, per row block): throws Cancelled if asked to stop.
  void check() const {
    if (cancelled()) throw Cancelled();
  }
  void cancel() { cancel_->store(true); }

  // A control for a step run inside this job: same pool and cancel flag (an abort reaches it), its own
  // progress sink, for a step whose done/total would otherwise restart the count the caller reports.
  JobControl nested(ProgressFn progress = {}) const { return JobControl(pool_, std::move(progress), cancel_); }

  // Reports progress, at most every ~50 ms plus always the final step, so callers may call it often.
  void progress(double done, double total) {
    if (!progress_) return;
    auto now = std::chrono::steady_clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(50)) return;
    last_ = now;
    progress_(done, total);
  }

 private:
  ThreadPool& pool_;
  ProgressFn progress_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace ffm
