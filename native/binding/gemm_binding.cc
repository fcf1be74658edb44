// sgemm(a, b, c, m, n, k, transA, transB, alpha, beta, kernel, onProgress) -> {promise, cancel}
//   c = alpha·op(a)·op(b) + beta·c, written in place into the Float32Array c; the promise resolves to c.
//   kernel: "portable" | "avx2" | "avx512" | undefined (FFMERGE_GEMM_KERNEL or the best this CPU runs).
// gemmKernels() -> string[]: the kernels this CPU supports, "portable" first, the default last.
// The multiply runs as one call into the core; cancel takes effect if it arrives before the work starts.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "binding/async_job.h"
#include "binding/registry.h"
#include "core/gemm.h"
#include "core/gemm_kernels.h"

namespace ffm::binding {
namespace {

size_t GetDim(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) ThrowCode(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0)
    ThrowCode(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a non-negative integer");
  return static_cast<size_t>(d);
}

Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 10) ThrowCode(env, "INVALID_ARGUMENT", "sgemm expects (a, b, c, m, n, k, transA, transB, alpha, beta, kernel?, onProgress?)");
  const F32View a = GetF32(info[0], "a"), b = GetF32(info[1], "b"), c = GetF32(info[2], "c");
  const size_t m = GetDim(info[3], "m"), n = GetDim(info[4], "n"), k = GetDim(info[5], "k");
  const bool ta = info[6].ToBoolean(), tb = info[7].ToBoolean();
  if (!info[8].IsNumber() || !info[9].IsNumber()) ThrowCode(env, "INVALID_ARGUMENT", "alpha and beta must be numbers");
  const float alpha = info[8].As<Napi::Number>().FloatValue(), beta = info[9].As<Napi::Number>().FloatValue();
  std::string kernel;
  const bool forced = info.Length() > 10 && info[10].IsString();
  if (forced) kernel = info[10].As<Napi::String>().Utf8Value();
  // Lengths are checked exactly (the TS wrapper reports shapes; this guards memory).
  if (a.length != m * k || b.length != k * n || c.length != m * n)
    ThrowCode(env, "SHAPE_MISMATCH",
              "sgemm: a, b and c must hold m·k, k·n and m·n floats (got " + std::to_string(a.length) + ", " +
                  std::to_string(b.length) + ", " + std::to_string(c.length) + " for m=" + std::to_string(m) +
                  ", n=" + std::to_string(n) + ", k=" + std::to_string(k) + ")");
  const size_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
  Napi::Value c_value = info[2];
  auto c_ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(c_value));
  return AsyncJob::Start(
      env, info.Length() > 11 ? info[11] : env.Undefined(), {info[0], info[1]},
      [=](JobControl& ctl) {
        const double total = double(m) * double(n) * double(k);
        ctl.progress(0, total);
        // Zero-sized leading dimensions are legal for empty matrices; the core wants them ≥ 1.
        sgemm_with_kernel(forced ? kernel.c_str() : nullptr, &ctl.pool(), ta, tb, m, n, k, alpha, a.data,
                          std::max<size_t>(lda, 1), b.data, std::max<size_t>(ldb, 1), beta, c.data,
                          std::max<size_t>(ldc, 1));
        ctl.progress(total, total);
      },
      [c_ref](Napi::Env) { return c_ref->Value(); });
}

Napi::Value GemmKernels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto names = sgemm_supported_kernels();
  Napi::Array out = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) out.Set(uint32_t(i), names[i]);
  return out;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  exports.Set("gemmKernels", Napi::Function::New(env, GemmKernels, "gemmKernels"));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
