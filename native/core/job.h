// What a long-running core routine gets from whoever started it: a thread pool to compute on, a cancel
// flag to poll, and a progress sink. Plain C++: the binding layer adapts it to Node (AbortSignal,
// progress callbacks), the standalone tests use it directly.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

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

  // A count inside the current step, reported beside progress (done, total), which stays where it was: a
  // fine-tune's validation batches between two steps. part(0, 0) when it is over. Rate-limited as progress
  // is; const, so that a routine handed a const control (a validation pass) can report.
  void set_part_sink(ProgressFn sink) { part_ = std::move(sink); }
  void part(double done, double total) const {
    if (!part_) return;
    auto now = std::chrono::steady_clock::now();
    if (done < total && now - part_last_ < std::chrono::milliseconds(50)) return;
    part_last_ = now;
    part_(done, total);
  }

 private:
  ThreadPool& pool_;
  ProgressFn progress_;
  ProgressFn part_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::chrono::steady_clock::time_point last_{};
  mutable std::chrono::steady_clock::time_point part_last_{};
};

// The job whose cancel flag sgemm polls when its caller passes none, for as long as a CancelScope lives on the
// thread that runs the job. Why: a forward pass checks its cancel flag between layers, and one layer of a
// Llama-2-7B-width model over a batch takes seconds on a few cores; its matrix products now stop within a cache
// block of an abort, without a control threaded through every nn op. Thread-local, so each job's thread sees
// its own; sgemm hands the pointer to the pool threads it splits the product over.
class CancelScope {
 public:
  explicit CancelScope(const JobControl& ctl) : prev_(current_) { current_ = &ctl; }
  ~CancelScope() { current_ = prev_; }
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;
  static const JobControl* current() { return current_; }

 private:
  const JobControl* prev_;
  static inline thread_local const JobControl* current_ = nullptr;
};

// The cancel flags of the jobs one owner (an addon instance) has running, so that it can stop them all at once.
// Why: a process or worker thread that exits, or a worker that is terminated, must not wait for a fine-tune of
// minutes to end. stop_all() sets every flag: each job ends at its next check() instead. Thread-safe;
// add/remove cost a lock, paid once per job.
class JobRegistry {
 public:
  using Flag = std::shared_ptr<std::atomic<bool>>;

  // Registers a job's flag; the key is for remove(). After stop_all() a new flag is set at once: a job started
  // by an exit listener that runs after the owner's would otherwise hold the exit up just the same.
  uint64_t add(Flag flag) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) flag->store(true);
    flags_.emplace(next_, std::move(flag));
    return next_++;
  }
  void remove(uint64_t key) {
    std::lock_guard<std::mutex> lock(mu_);
    flags_.erase(key);
  }
  // Sets the flag of every registered job and of every job added later.
  void stop_all() {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    for (auto& kv : flags_) kv.second->store(true);
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return flags_.size();
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Flag> flags_;
  uint64_t next_ = 0;
  bool stopped_ = false;
};

}  // namespace ffm
