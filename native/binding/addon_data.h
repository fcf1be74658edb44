// Per-instance state of the addon (one per Node environment, i.e. per worker thread that loads it).
// Nothing here is a process global: two environments get two pools.
#pragma once
#include <napi.h>

#include <memory>

#include "binding/reaper.h"
#include "core/job.h"
#include "core/thread_pool.h"

namespace ffm::binding {

struct AddonData {
  std::unique_ptr<ThreadPool> pool;
  std::shared_ptr<Reaper> reaper;  // frees large native memory off the main thread (reaper.h)
  // The cancel flags of this instance's running jobs (AsyncJob adds and removes them). Stopped when the
  // environment's process object emits 'exit' (addon.cc), which is before Node waits for the running jobs.
  std::shared_ptr<JobRegistry> jobs = std::make_shared<JobRegistry>();

  // The environment is being torn down. Node has waited for the running jobs before it gets here (addon.cc),
  // so this is a backstop: should a job still run, every later cancellation check of it throws, and flags
  // added afterwards start set.
  ~AddonData() {
    if (jobs) jobs->stop_all();
  }
};

AddonData& GetAddonData(Napi::Env env);

}  // namespace ffm::binding
