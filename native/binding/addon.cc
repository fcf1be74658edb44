// Module entry: creates the per-instance thread pool and runs every registered binding's init.
#include <napi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "binding/addon_data.h"
#include "binding/registry.h"

namespace ffm::binding {

namespace {
std::vector<InitFn>& Registry() {
  static std::vector<InitFn> fns;  // filled by static initialisers before the module init runs
  return fns;
}
}  // namespace

Registrar::Registrar(InitFn fn) { Registry().push_back(fn); }

void InitAll(Napi::Env env, Napi::Object exports) {
  for (InitFn fn : Registry()) fn(env, exports);
}

AddonData& GetAddonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

namespace {
// A positive count from the environment, or 0 when unset or not one.
unsigned CountFromEnv(const char* name) {
  const char* s = std::getenv(name);
  if (!s) return 0;
  long v = std::strtol(s, nullptr, 10);
  return v > 0 && v < 4096 ? static_cast<unsigned>(v) : 0;
}

// FFMERGE_THREADS caps the compute threads of this instance (default: all cores).
unsigned ThreadsFromEnv() { return CountFromEnv("FFMERGE_THREADS"); }

// How many jobs of this instance run at once: FFMERGE_JOB_THREADS; else UV_THREADPOOL_SIZE, which bounded them
// when they ran on libuv's pool (a host that raised it keeps its concurrency); else libuv's default, 4. A
// short job queues behind that many long ones, so a server mixing both raises it.
unsigned JobThreadsFromEnv() {
  if (unsigned n = CountFromEnv("FFMERGE_JOB_THREADS")) return n;
  if (unsigned n = CountFromEnv("UV_THREADPOOL_SIZE")) return std::min(n, 1024u);
  return 4;
}

// glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), after which the
// jobs' batch-sized buffers (tens of MB: activation copies, captured FF pre-activations, block scratch) are
// carved from the heap and pool-thread arenas, and their free space is kept instead of returned (hundreds of
// MB of RSS on a GPT-2-small compress). A fixed threshold keeps blocks of 4 MiB and more in their own
// mappings, unmapped on free. It is a process setting: set once, and not when the host chose its own
// (MALLOC_MMAP_THRESHOLD_, GLIBC_TUNABLES) or opted out with FFMERGE_MALLOC_DEFAULTS=1.
void TuneAllocatorOnce() {
#if defined(__GLIBC__)
  static std::once_flag once;
  std::call_once(once, [] {
    const char* opt_out = std::getenv("FFMERGE_MALLOC_DEFAULTS");  // "1" (the loader refuses other values but 0)
    if ((opt_out && std::strcmp(opt_out, "1") == 0) || std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("GLIBC_TUNABLES")) return;
    (void)mallopt(M_MMAP_THRESHOLD, 4 << 20);
  });
#endif
}

// process.exit() (and an exit on an uncaught exception) emits 'exit' before the process ends. Jobs ran on
// libuv's threads once, which Node joins at exit (uv_library_shutdown), so a fine-tune of minutes held an
// exiting process for minutes. They run on the instance's JobRunner now, but the instance still stops them
// from an 'exit' listener, before any teardown: each ends at its next cancellation check, whichever way the
// environment then ends (a worker's teardown joins the runner in ~AddonData). The outputs left half-written
// are removed there too: process.exit() runs no environment teardown. Registered once per instance (Node
// loads an addon once per environment) on that environment's own process object.
void CleanUpOnExit(Napi::Env env, const std::shared_ptr<JobRegistry>& jobs, const std::shared_ptr<TempOutputs>& temps) {
  Napi::Value process = env.Global().Get("process");
  if (!process.IsObject()) return;  // an embedder without `process`: nothing emits 'exit' to listen to
  Napi::Value on = process.As<Napi::Object>().Get("on");
  if (!on.IsFunction()) return;
  Napi::Function stop = Napi::Function::New(
      env,
      [jobs, temps](const Napi::CallbackInfo&) {
        jobs->stop_all();
        temps->remove_held();
      },
      "ffmergeCleanUpOnExit");
  on.As<Napi::Function>().Call(process, {Napi::String::New(env, "exit"), stop});
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  TuneAllocatorOnce();
  auto* data = new AddonData();
  data->pool = std::make_unique<ThreadPool>(ThreadsFromEnv());
  data->runner = std::make_unique<JobRunner>(JobThreadsFromEnv());
  data->reaper = std::make_shared<Reaper>();
  env.SetInstanceData(data);  // deleted (jobs stopped, pool joined) when the environment tears down
  CleanUpOnExit(env, data->jobs, data->temps);
  InitAll(env, exports);
  return exports;
}

}  // namespace ffm::binding

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return ffm::binding::Init(env, exports); }
NODE_API_MODULE(ffmerge, InitModule)
