// sgemm(a, b, c, m, n, k, transA, transB, alpha, beta, kernel, onProgress) -> {promise, cancel}
//   c = alpha·op(a)·op(b) + beta·c, written in place into the Float32Array c; the promise resolves to c.
//   c null: the result is a new m×n Float32Array, made on the pool and handed over without a copy (beta is
//   then ignored). a and b may be StagedFloats (lib/native/staged.ts), read in place rather than copied on
//   the main thread.
//   kernel: "portable" | "avx2" | "avx512" | undefined (FFMERGE_GEMM_KERNEL or the best this CPU runs).
// gemmKernels() -> string[]: the kernels this CPU supports, "portable" first, the default last.
// cancel takes effect between the core's cache blocks (the promise rejects with ABORTED, c is left as it was).
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "binding/async_job.h"
#include "binding/ff_binding.h"
#include "binding/registry.h"
#include "binding/staged_floats.h"
#include "core/error.h"
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
  size_t a_len = 0, b_len = 0;
  model::Buffer a_staged = StagedOrLength(info[0], "a", &a_len), b_staged = StagedOrLength(info[1], "b", &b_len);
  const bool fresh = info[2].IsNull() || info[2].IsUndefined();
  const size_t c_len = fresh ? 0 : GetF32(info[2], "c").length;
  const size_t m = GetDim(info[3], "m"), n = GetDim(info[4], "n"), k = GetDim(info[5], "k");
  const bool ta = info[6].ToBoolean(), tb = info[7].ToBoolean();
  if (!info[8].IsNumber() || !info[9].IsNumber()) ThrowCode(env, "INVALID_ARGUMENT", "alpha and beta must be numbers");
  const float alpha = info[8].As<Napi::Number>().FloatValue();
  const float beta = fresh ? 0.0f : info[9].As<Napi::Number>().FloatValue();
  std::string kernel;
  const bool forced = info.Length() > 10 && info[10].IsString();
  if (forced) kernel = info[10].As<Napi::String>().Utf8Value();
  // Lengths are checked exactly (the TS wrapper reports shapes; this guards memory, products included: a
  // wrapped-around m·k must not pass for an empty array).
  const auto fits = [](size_t x, size_t y) { return y == 0 || x <= SIZE_MAX / y; };
  const bool overflow = !fits(m, k) || !fits(k, n) || !fits(m, n);
  if (overflow || a_len != m * k || b_len != k * n || (!fresh && c_len != m * n))
    ThrowCode(env, "SHAPE_MISMATCH",
              "sgemm: a, b and c must hold m·k, k·n and m·n floats (got " + std::to_string(a_len) + ", " +
                  std::to_string(b_len) + ", " + (fresh ? std::string("none") : std::to_string(c_len)) + " for m=" +
                  std::to_string(m) + ", n=" + std::to_string(n) + ", k=" + std::to_string(k) + ")");
  // a new output must fit a Float32Array (V8 holds at most 2^32 values in one): past it the hand-over would
  // fail after the whole product was computed
  if (fresh && m * n > (size_t(1) << 32)) ThrowCode(env, "OUT_OF_MEMORY", "sgemm: an m·n output of more than 2^32 values does not fit a Float32Array");
  const size_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
  // a and b: a staged buffer is shared, a Float32Array copied for the worker (async_job.h says why). c, when
  // given, is written back when the job settles; with beta == 0 it is not read, so a fresh buffer of its size
  // takes the result instead of a copy.
  model::Buffer a_in = a_staged ? a_staged : model::Buffer(CopyTyped<float>(info[0], "a"));
  model::Buffer b_in = b_staged ? b_staged : model::Buffer(CopyTyped<float>(info[1], "b"));
  auto c_own = std::make_shared<std::vector<float>>();
  try {
    if (!fresh && beta != 0.0f) c_own = CopyTyped<float>(info[2], "c");
  } catch (const std::bad_alloc&) {
    ThrowCode(env, "OUT_OF_MEMORY", "not enough memory for the result of sgemm");
  }
  auto c_ref = fresh ? nullptr : std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(info[2]));
  const size_t mn = m * n;
  return AsyncJob::Start(
      env, info.Length() > 11 ? info[11] : env.Undefined(),
      [=](JobControl& ctl) {
        if (c_own->size() != mn) {
          try {
            c_own->assign(mn, 0.0f);  // its pages faulted here, on the pool
          } catch (const std::bad_alloc&) {
            throw Error("OUT_OF_MEMORY", "not enough memory for the " + std::to_string(m) + "×" + std::to_string(n) + " result of sgemm");
          }
        }
        const double total = double(m) * double(n) * double(k);
        ctl.progress(0, total);
        // Zero-sized leading dimensions are legal for empty matrices; the core wants them ≥ 1. The job's
        // control goes in so that an abort stops the multiply between cache blocks.
        sgemm_with_kernel(forced ? kernel.c_str() : nullptr, &ctl.pool(), ta, tb, m, n, k, alpha, a_in->data(),
                          std::max<size_t>(lda, 1), b_in->data(), std::max<size_t>(ldb, 1), beta, c_own->data(),
                          std::max<size_t>(ldc, 1), &ctl);
        ctl.progress(total, total);
      },
      [c_ref, c_own](Napi::Env e) -> Napi::Value {
        if (!c_ref) return ExternalF32(e, std::move(*c_own));
        WriteBack(*c_ref, *c_own, "c");
        return c_ref->Value();
      });
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
