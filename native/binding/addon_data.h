// Per-instance state of the addon (one per Node environment, i.e. per worker thread that loads it).
// Nothing here is a process global: two environments get two pools.
#pragma once
#include <napi.h>

#include <memory>

#include "binding/reaper.h"
#include "core/thread_pool.h"

namespace ffm::binding {

struct AddonData {
  std::unique_ptr<ThreadPool> pool;
  std::shared_ptr<Reaper> reaper;  // frees large native memory off the main thread (reaper.h)
};

AddonData& GetAddonData(Napi::Env env);

}  // namespace ffm::binding
