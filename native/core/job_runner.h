// The threads that run native jobs' top-level work: a fixed number of them, jobs beyond that wait in order.
//
// Why not libuv's thread pool (napi_async_work): a job holds its thread for seconds to minutes, and libuv's
// four threads also serve the host's fs, dns.lookup, crypto and zlib calls, which four running jobs would
// stall. And a worker thread's teardown waits for its pending libuv work, so worker.terminate() would wait
// for the whole job. A job here only parks its thread on its own work; the compute itself runs on the ThreadPool.
//
// Plain C++ (no Node-API): the binding owns one per addon instance (AddonData), the standalone tests use it.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ffm {

class JobRunner {
 public:
  // threads: how many jobs run at once (at least 1). Started on first use, not before.
  explicit JobRunner(unsigned threads);
  // Runs what is still queued, then joins. The owner stops its jobs first (JobRegistry::stop_all), so each
  // queued or running job ends at its next cancellation check.
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Queues a task; one of the runner's threads runs it. A task must not throw (the binding catches inside).
  // Returns the task's ticket, for withdraw().
  uint64_t post(std::function<void()> task);
  // Takes the task back if no thread has started it yet, and returns it (to run or drop); empty once a thread
  // took it. Why: a job cancelled while it waits behind long ones must end now, not when a thread frees
  // (seconds to hours): the binding runs what it gets back at once, and its first cancellation check ends it.
  std::function<void()> withdraw(uint64_t ticket);
  unsigned threads() const { return max_threads_; }

 private:
  struct Queued {
    uint64_t ticket;
    std::function<void()> task;
  };
  void loop();
  const unsigned max_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  uint64_t next_ticket_ = 1;
  std::vector<std::thread> threads_;
  unsigned idle_ = 0;
  bool stopping_ = false;
};

}  // namespace ffm
