// Module entry: creates the per-instance thread pool and runs every registered binding's init.
#include <napi.h>

#include <cstdlib>
#include <vector>

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
unsigned ThreadsFromEnv() {
  // FFMERGE_THREADS caps the compute threads of this instance (default: all cores).
  const char* s = std::getenv("FFMERGE_THREADS");
  if (!s) return 0;
  long v = std::strtol(s, nullptr, 10);
  return v > 0 && v < 4096 ? static_cast<unsigned>(v) : 0;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->pool = std::make_unique<ThreadPool>(ThreadsFromEnv());
  env.SetInstanceData(data);  // deleted (pool joined) when the environment tears down
  InitAll(env, exports);
  return exports;
}

}  // namespace ffm::binding

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return ffm::binding::Init(env, exports); }
NODE_API_MODULE(ffmerge, InitModule)
