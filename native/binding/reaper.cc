#include "binding/reaper.h"

#include <utility>

#include "binding/addon_data.h"
#include "core/thread_pool.h"

namespace ffm::binding {

Reaper::Reaper() : thread_([this] { Loop(); }) {}

Reaper::~Reaper() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void Reaper::Drop(std::shared_ptr<const void> p, std::function<void()> release_pages) {
  if (!p || p.use_count() > 1) return;  // not the last reference: dropping it frees nothing
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back({std::move(p), std::move(release_pages)});
  }
  wake_.notify_one();
}

void Reaper::Loop() {
  lower_this_thread_priority();  // frees can wait; the host's event loop should not wait for them
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything queued is freed
    Item item = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    // still the last reference (nobody else held one to copy from): its pages are nobody else's
    if (item.release_pages && item.p.use_count() == 1) item.release_pages();
    item.p.reset();  // the free itself, outside the lock
    item.release_pages = nullptr;
    lock.lock();
  }
}

std::shared_ptr<Reaper> ReaperOf(Napi::Env env) { return GetAddonData(env).reaper; }

}  // namespace ffm::binding
