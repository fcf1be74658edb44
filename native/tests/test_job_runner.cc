#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "core/job_runner.h"
#include "tests/check.h"

namespace {
void wait_until(const std::function<bool()>& done) {
  for (int i = 0; i < 5000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}
}  // namespace

TEST(runs_every_task_at_most_threads_at_once) {
  std::atomic<int> running{0}, most{0}, ran{0};
  {
    ffm::JobRunner runner(3);
    for (int i = 0; i < 20; ++i) {
      runner.post([&] {
        int now = ++running;
        for (int m = most.load(); now > m && !most.compare_exchange_weak(m, now);) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        --running;
        ++ran;
      });
    }
    wait_until([&] { return ran.load() == 20; });
  }
  CHECK(ran.load() == 20);
  CHECK(most.load() >= 1 && most.load() <= 3);
}

TEST(one_thread_runs_tasks_in_order) {
  std::mutex mu;
  std::vector<int> order;
  {
    ffm::JobRunner runner(1);
    for (int i = 0; i < 50; ++i) runner.post([&, i] {
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(i);
    });
  }  // the destructor runs what is still queued
  CHECK(order.size() == 50);
  for (int i = 0; i < int(order.size()); ++i) CHECK(order[i] == i);
}

TEST(a_blocked_job_does_not_hold_up_the_others) {
  // the reason for more than one thread: a long job (a fine-tune) must not queue every short one behind it
  std::atomic<bool> release{false};
  std::atomic<int> short_done{0};
  ffm::JobRunner runner(2);
  runner.post([&] { wait_until([&] { return release.load(); }); });
  for (int i = 0; i < 5; ++i) runner.post([&] { ++short_done; });
  wait_until([&] { return short_done.load() == 5; });
  CHECK(short_done.load() == 5);
  release = true;
}

TEST(starts_no_thread_before_a_task) {
  // an instance that never runs a job (a worker that only reads a header) costs no thread; destruction is clean
  ffm::JobRunner runner(4);
  CHECK(runner.threads() == 4);
}

TEST(two_posts_to_one_idle_thread_run_at_once) {
  // Two tasks that each wait for the other to start: they finish only if both run at once. Posted back to
  // back while the runner's one thread is idle (not yet woken), the second must get a thread of its own.
  ffm::JobRunner runner(2);
  std::atomic<int> warm{0};
  runner.post([&] { ++warm; });
  wait_until([&] { return warm.load() == 1; });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // that thread is back waiting: idle
  std::atomic<int> started{0}, finished{0};
  for (int i = 0; i < 2; ++i) {
    runner.post([&] {
      ++started;
      wait_until([&] { return started.load() == 2; });
      if (started.load() == 2) ++finished;
    });
  }
  wait_until([&] { return finished.load() == 2; });
  CHECK(finished.load() == 2);
}

TEST(a_task_not_started_can_be_withdrawn_and_one_started_cannot) {
  // one thread, held by a blocked task: the next two wait in the queue
  std::atomic<bool> release{false}, started{false};
  std::atomic<int> ran_b{0}, ran_c{0};
  ffm::JobRunner runner(1);
  const uint64_t a = runner.post([&] {
    started = true;
    wait_until([&] { return release.load(); });
  });
  const uint64_t b = runner.post([&] { ++ran_b; });
  runner.post([&] { ++ran_c; });
  wait_until([&] { return started.load(); });
  CHECK(!runner.withdraw(a));  // running: stays with its thread
  std::function<void()> got = runner.withdraw(b);
  CHECK(bool(got));
  CHECK(!runner.withdraw(b));  // taken once
  CHECK(!runner.withdraw(12345));
  got();  // the caller runs it (or drops it)
  CHECK(ran_b.load() == 1);
  release = true;
  wait_until([&] { return ran_c.load() == 1; });
  CHECK(ran_c.load() == 1);  // the task behind it still runs, once
  CHECK(ran_b.load() == 1);  // and the withdrawn one never runs on the runner
}

TEST_MAIN()
