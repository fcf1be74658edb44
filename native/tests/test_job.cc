// JobRegistry (core/job.h): what an addon instance uses to stop every running job when its process or worker
// thread exits (native/binding/addon.cc); the exit itself is test/exit-stops-jobs.test.ts.
#include <atomic>
#include <memory>

#include "core/job.h"
#include "tests/check.h"

using ffm::JobRegistry;

namespace {
JobRegistry::Flag flag() { return std::make_shared<std::atomic<bool>>(false); }
}  // namespace

TEST(stop_all_sets_the_flags_of_registered_jobs_only) {
  JobRegistry r;
  auto a = flag(), b = flag(), done = flag();
  r.add(a);
  const uint64_t kb = r.add(b);
  r.remove(r.add(done));  // a job that finished before the exit
  CHECK(r.size() == 2);
  CHECK(!a->load() && !b->load());
  r.stop_all();
  CHECK(a->load() && b->load());
  CHECK(!done->load());
  r.remove(kb);
  CHECK(r.size() == 1);
}

TEST(a_job_added_after_stop_all_starts_stopped) {
  JobRegistry r;
  r.stop_all();
  auto late = flag();
  r.add(late);
  CHECK(late->load());
}

TEST(a_stopped_job_throws_at_its_next_check) {
  ffm::ThreadPool pool(1);
  JobRegistry r;
  auto f = flag();
  r.add(f);
  ffm::JobControl ctl(pool, {}, f);
  ctl.check();  // not yet
  r.stop_all();
  bool cancelled = false;
  try {
    ctl.check();
  } catch (const ffm::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled);
}

TEST_MAIN()
