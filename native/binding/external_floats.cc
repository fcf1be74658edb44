// externalFloats(length, f64, onProgress?) -> {promise<Float32Array | Float64Array>, cancel}
//   a zeroed array of `length` float32 (float64 with f64), allocated with every page faulted in a job on the
//   pool, handed to JS without a copy; when it is collected the reaper frees it.
// Why: the merge's own arithmetic (lib/merge: FFMean's float64 sums and result, a permuted FF) runs in JS, a
// slice at a time. At Llama-2-7B width those arrays are 0.5–1 GB each. Made by JS, their fresh pages were
// faulted on the main thread as the loops first wrote them, and V8 freed them when and where it chose, one
// munmap each (reaper.h says what a large munmap costs everyone else). Here the pool faults the pages and
// the reaper frees them, a slice of pages at a time.
#include <napi.h>

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "binding/async_job.h"
#include "binding/ff_binding.h"
#include "binding/registry.h"
#include "core/error.h"

namespace ffm::binding {
namespace {

template <typename T>
void Allocate(std::vector<T>& out, size_t n) {
  try {
    out.assign(n, T(0));  // every page written here, on the pool
  } catch (const std::bad_alloc&) {
    throw Error("OUT_OF_MEMORY", "not enough memory for an array of " + std::to_string(n) + " values");
  }
}

Napi::Value ExternalFloats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t n = GetCount(info[0], "length");
  const bool f64 = info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  if (n > SIZE_MAX / sizeof(double)) ThrowCode(env, "OUT_OF_MEMORY", "an array of this length does not fit in memory");
  auto f = std::make_shared<std::vector<float>>();
  auto d = std::make_shared<std::vector<double>>();
  return AsyncJob::Start(
      env, info[2],
      [f, d, n, f64](JobControl& ctl) {
        if (f64) Allocate(*d, n);
        else Allocate(*f, n);
        ctl.check();
      },
      [f, d, f64](Napi::Env e) { return f64 ? ExternalF64(e, std::move(*d)) : ExternalF32(e, std::move(*f)); });
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("externalFloats", Napi::Function::New(env, ExternalFloats)); }

}  // namespace

FFMERGE_BINDING(Init);
}  // namespace ffm::binding
