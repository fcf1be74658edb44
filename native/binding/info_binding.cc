// buildInfo(): what was compiled and what this CPU runs, for the loader's "which build and why" report.
#include <napi.h>

#include "binding/addon_data.h"
#include "binding/registry.h"
#include "core/gemm.h"

#ifndef FFMERGE_VARIANT
#define FFMERGE_VARIANT "cpu"
#endif

namespace ffm::binding {
namespace {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("variant", FFMERGE_VARIANT);
  o.Set("threads", GetAddonData(env).pool->size());
  o.Set("gemmKernel", sgemm_kernel_name());
#if defined(__VERSION__)
  o.Set("compiler", __VERSION__);
#endif
  return o;
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo")); }

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
