// linearSumAssignment(cost, rows, cols, maximize, kernel, onProgress) -> {promise, cancel}
//   cost: Float32Array or Float64Array (row-major rows×cols, copied for the worker);
//   kernel: "auto" | "scalar" | "avx2" | "avx512" (tests compare them); resolves to
//   {rowInd: Int32Array, colInd: Int32Array, objective: number}.
// assignmentKernels() -> {auto: string, supported: string[]}
#include <napi.h>

#include <memory>
#include <string>

#include "binding/async_job.h"
#include "binding/registry.h"
#include "binding/staged_floats.h"
#include "core/assignment.h"

namespace ffm::binding {
namespace {

LapKernel ParseKernel(Napi::Env env, const Napi::Value& v) {
  if (v.IsUndefined()) return LapKernel::Auto;
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "auto") return LapKernel::Auto;
  if (s == "scalar") return LapKernel::Scalar;
  if (s == "avx2") return LapKernel::Avx2;
  if (s == "avx512") return LapKernel::Avx512;
  ThrowCode(env, "INVALID_ARGUMENT", "kernel must be one of \"auto\", \"scalar\", \"avx2\", \"avx512\"");
}

size_t GetDim(Napi::Env env, const Napi::Value& v, const char* what) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= 2147483647.0 && d == double(size_t(d))))
    ThrowCode(env, "INVALID_ARGUMENT", std::string(what) + " must be an integer between 0 and 2^31-1");
  return size_t(d);
}

Napi::Value LinearSumAssignment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value cost = info[0];
  size_t rows = GetDim(env, info[1], "rows");
  size_t cols = GetDim(env, info[2], "cols");
  bool maximize = info[3].ToBoolean().Value();
  LapKernel kernel = ParseKernel(env, info[4]);
  if (!lap_kernel_supported(kernel)) ThrowCode(env, "INVALID_ARGUMENT", "this CPU cannot run the requested kernel");

  // Copied for the worker (async_job.h says why): the copy is rows·cols values, the solve O(n³). A staged
  // float32 cost (lib/native/staged.ts) is shared instead: copied here, on the main thread, a d_ff of 11,008
  // is 485 MB.
  std::shared_ptr<const std::vector<float>> f32 = SharedStaged(cost);
  Owned<double> f64;
  const auto is = [&](napi_typedarray_type t) { return cost.IsTypedArray() && cost.As<Napi::TypedArray>().TypedArrayType() == t; };
  if (!f32 && is(napi_float32_array)) f32 = CopyTyped<float>(cost, "cost");
  else if (!f32 && is(napi_float64_array)) f64 = CopyTyped<double>(cost, "cost");
  else if (!f32) ThrowCode(env, "INVALID_ARGUMENT", "cost must be a Float32Array or a Float64Array");
  const size_t length = f32 ? f32->size() : f64->size();
  if (length != rows * cols)
    ThrowCode(env, "SHAPE_MISMATCH",
              "cost has " + std::to_string(length) + " elements but rows×cols = " + std::to_string(rows) + "×" +
                  std::to_string(cols) + " = " + std::to_string(rows * cols));

  auto result = std::make_shared<Assignment>();
  return AsyncJob::Start(
      env, info[5],
      [=](JobControl& ctl) {
        *result = f32 ? linear_sum_assignment(ctl, f32->data(), rows, cols, maximize, kernel)
                      : linear_sum_assignment(ctl, f64->data(), rows, cols, maximize, kernel);
      },
      [result](Napi::Env env) -> Napi::Value {
        size_t k = result->row_ind.size();
        auto row_ind = Napi::Int32Array::New(env, k);
        auto col_ind = Napi::Int32Array::New(env, k);
        for (size_t i = 0; i < k; ++i) {
          row_ind[i] = result->row_ind[i];
          col_ind[i] = result->col_ind[i];
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("rowInd", row_ind);
        o.Set("colInd", col_ind);
        o.Set("objective", result->objective);
        return o;
      });
}

Napi::Value AssignmentKernels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("auto", lap_kernel_name(LapKernel::Auto));
  Napi::Array supported = Napi::Array::New(env);
  uint32_t n = 0;
  for (auto k : {LapKernel::Scalar, LapKernel::Avx2, LapKernel::Avx512})
    if (lap_kernel_supported(k)) supported.Set(n++, lap_kernel_name(k));
  o.Set("supported", supported);
  return o;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("linearSumAssignment", Napi::Function::New(env, LinearSumAssignment, "linearSumAssignment"));
  exports.Set("assignmentKernels", Napi::Function::New(env, AssignmentKernels, "assignmentKernels"));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
