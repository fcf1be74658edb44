// Runs a plain C++ work function off the main thread and hands JS back {promise, cancel}.
//
// The work function sees only a JobControl (pool, cancel flag, progress); it must not touch Napi, and it
// must not read JS memory either: a reference to a typed array keeps the array object alive but not its
// memory, which a transfer (postMessage, structuredClone with `transfer`) or detach frees while the worker
// still reads it. So every input a worker reads is copied into native memory on the main thread (CopyTyped
// below) before the job starts, and an in/out array (sgemm's c, ridge's G and C) is written back on the main
// thread by the finish function (WriteBack), which refuses a buffer detached in the meantime. The copies
// cost little next to the work they feed (benchmarks/RESULTS.md, "Native job inputs are copied").
// Results are built on the main thread by the finish function.
//
// The work runs on the instance's JobRunner (core/job_runner.h says why not on libuv's pool), and comes back
// through a thread-safe function: its progress reports, then its end, which settles the promise. The
// environment's teardown (worker.terminate(), process exit) therefore does not wait for a running job: the
// instance stops its jobs (AddonData), and a job that ends after its environment is gone settles nothing.
// The build defines NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS (binding.gyp, CMakeLists.txt), so that an error
// node-addon-api can no longer throw into a dying environment is dropped instead of aborting the process
// (test/addon-teardown.test.ts).
#pragma once
#include <napi.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <new>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/job.h"

namespace ffm::binding {

class AsyncJob {
 public:
  using Work = std::function<void(JobControl&)>;
  using Finish = std::function<Napi::Value(Napi::Env)>;

  // on_progress: a JS function (done, total) or undefined. There is deliberately no way to hand the job JS
  // values to read: copy them (CopyTyped). Returns { promise, cancel }; cancel() asks the work to stop, the
  // promise then rejects with code ABORTED. Work and Finish (which may hold JS references) are destroyed on the
  // main thread once the promise is settled, before any JS continuation runs.
  static Napi::Object Start(Napi::Env env, Napi::Value on_progress, Work work, Finish finish);
};

// Helpers shared by binding files.
// A Float32Array argument as pointer + length (throws INVALID_ARGUMENT naming `what` otherwise). The pointer
// is valid during the current call only: synchronous use (copying into a model) is fine, a worker must
// never see it (use CopyTyped).
struct F32View {
  float* data;
  size_t length;
};
F32View GetF32(const Napi::Value& v, const char* what);
int32_t* GetI32(const Napi::Value& v, const char* what, size_t* length);
// A non-negative integer argument (throws INVALID_ARGUMENT naming `what` otherwise).
size_t GetCount(const Napi::Value& v, const char* what);
// Throws a JS Error with .code = code.
[[noreturn]] void ThrowCode(Napi::Env env, const std::string& code, const std::string& message);
// f() on the main thread, a core Error it throws rethrown as the JS error of its code.
template <class F>
auto CallCore(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    ThrowCode(env, e.code(), e.what());
  }
}

template <class T>
using Owned = std::shared_ptr<std::vector<T>>;

// Maps an element type to its Node-API typed array kind and a name for messages.
template <class T> struct TypedKind;
template <> struct TypedKind<float> { static constexpr napi_typedarray_type type = napi_float32_array; static constexpr const char* name = "Float32Array"; };
template <> struct TypedKind<double> { static constexpr napi_typedarray_type type = napi_float64_array; static constexpr const char* name = "Float64Array"; };
template <> struct TypedKind<int32_t> { static constexpr napi_typedarray_type type = napi_int32_array; static constexpr const char* name = "Int32Array"; };
template <> struct TypedKind<uint8_t> { static constexpr napi_typedarray_type type = napi_uint8_array; static constexpr const char* name = "Uint8Array"; };

// A typed array's elements copied into native memory that the job owns (shared by its closures), so that
// detaching the JS buffer while the worker runs cannot be observed. INVALID_ARGUMENT for another type,
// OUT_OF_MEMORY when the copy cannot be allocated.
template <class T>
Owned<T> CopyTyped(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedKind<T>::type)
    ThrowCode(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a " + TypedKind<T>::name);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  const T* p = a.Data();
  try {
    return std::make_shared<std::vector<T>>(p, p + a.ElementLength());
  } catch (const std::bad_alloc&) {
    ThrowCode(v.Env(), "OUT_OF_MEMORY", std::string("not enough memory to copy ") + what + " for a native job");
  }
}

// Copies a job's result into the JS array it was given (held by `target`), on the main thread. A buffer
// transferred or detached while the job ran reads as a different length: the job then fails with
// BUFFER_DETACHED rather than writing into memory that is no longer the array's.
template <class T>
void WriteBack(const Napi::Reference<Napi::Value>& target, const std::vector<T>& data, const char* what) {
  Napi::Value v = target.Value();
  auto a = v.As<Napi::TypedArrayOf<T>>();
  if (a.ElementLength() != data.size())
    ThrowCode(v.Env(), "BUFFER_DETACHED",
              std::string(what) + "'s ArrayBuffer was transferred or detached while the job ran; its result was not written");
  if (!data.empty()) std::memcpy(a.Data(), data.data(), data.size() * sizeof(T));
}

}  // namespace ffm::binding
