// Per-instance state of the addon (one per Node environment, i.e. per worker thread that loads it).
// Nothing here is a process global: two environments get two pools.
#pragma once
#include <napi.h>

#include <memory>

#include "binding/reaper.h"
#include "binding/temp_outputs.h"
#include "core/job.h"
#include "core/job_runner.h"
#include "core/thread_pool.h"

namespace ffm::binding {

struct AddonData {
  std::unique_ptr<ThreadPool> pool;
  std::shared_ptr<Reaper> reaper;  // frees large native memory off the main thread (reaper.h)
  // The cancel flags of this instance's running jobs (AsyncJob adds and removes them). Stopped when the
  // environment's process object emits 'exit' (addon.cc), and when the environment is torn down (below).
  std::shared_ptr<JobRegistry> jobs = std::make_shared<JobRegistry>();
  // The threads jobs run on (core/job_runner.h): how many jobs run at once, the rest waiting their turn
  // (addon.cc: FFMERGE_JOB_THREADS, else UV_THREADPOOL_SIZE, which bounded them on libuv's pool, else 4). The
  // compute under them is the pool's. Declared after the pool: destroyed first.
  std::unique_ptr<JobRunner> runner;
  // The temporary outputs this instance's writers are filling (temp_outputs.h): removed below, and when the
  // process emits 'exit' (addon.cc), since no JS cleanup runs then.
  std::shared_ptr<TempOutputs> temps = std::make_shared<TempOutputs>();

  // The environment is being torn down (worker.terminate(), the end of a process or worker): Node does not
  // wait for jobs on the runner, so they are stopped here, each at its next cancellation check, and the
  // runner then joins them before the pool goes. Flags added afterwards start set.
  ~AddonData() {
    if (jobs) jobs->stop_all();
    runner.reset();
    temps->remove_held();
  }
};

AddonData& GetAddonData(Napi::Env env);

}  // namespace ffm::binding
