#include "binding/reaper.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#if defined(__linux__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

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

void ReleasePages(const void* data, size_t bytes) {
#if defined(__linux__) || defined(__APPLE__)
  constexpr size_t kMin = size_t(16) << 20;    // a smaller free is quick anyway
  constexpr size_t kSlice = size_t(32) << 20;  // ~3 ms of the lock each on this VM
  if (!data || bytes < kMin) return;
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  // inward to whole pages: the allocator's bookkeeping just outside the span is never touched
  uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  for (; begin < end; begin += kSlice) madvise(reinterpret_cast<void*>(begin), std::min<uintptr_t>(kSlice, end - begin), MADV_DONTNEED);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace ffm::binding
