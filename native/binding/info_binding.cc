// buildInfo(): what was compiled and what this CPU runs, for the loader's "which build and why" report.
#include <napi.h>

#include "binding/addon_data.h"
#include "binding/registry.h"
#include "core/gemm.h"
#ifdef FFMERGE_HAVE_CUDA
#include <string>

#include "cuda/correlation_cuda.h"
#endif

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
  o.Set("jobThreads", GetAddonData(env).runner->threads());
  o.Set("gemmKernel", sgemm_kernel_name());
#ifdef FFMERGE_HAVE_CUDA
  // The loader picks this build only when a device is visible (cudaDevices > 0).
  std::string device_name;
  int devices = 0;
  ffm::cuda::available(&device_name, &devices);
  o.Set("cudaDevices", devices);
  if (devices > 0) o.Set("cudaDeviceName", device_name);
#endif
#if defined(__VERSION__)
  o.Set("compiler", __VERSION__);
#endif
  return o;
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo")); }

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
