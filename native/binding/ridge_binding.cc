// ridgeAccumulate / ridgeSolve: the training-free refit's least squares (core/ridge.h) as async jobs.
//   ridgeAccumulate(H: Float32Array n×p, Y: Float32Array n×m, n, p, m, G: Float64Array, C: Float64Array,
//                   onProgress?) → {promise<void>, cancel}     (adds into G and C in place)
//   ridgeSolve(G, C, p, m, lambdaRel, onProgress?) → {promise<Float64Array X (p+1)×m>, cancel}
//   greedySelect(G, C, p, m, forced: Int32Array, count, lambdaRel, onProgress?) → {promise<Int32Array>, cancel}
//     (the select merge's pivoted-Cholesky column subset, core/select.h)
//   matmulABt(A: Float32Array M×K, B: Float32Array N×K, M, N, K) → {promise<Float32Array C = A·Bᵀ (M×N)>, cancel}
//     (the refit's row-block products: FF inputs, merged hidden activations, original FF outputs)
#include <napi.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "binding/async_job.h"
#include "binding/registry.h"
#include "core/gemm.h"
#include "core/ridge.h"
#include "core/select.h"

namespace ffm::binding {
namespace {

double* GetF64(const Napi::Value& v, const char* what, size_t want) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    ThrowCode(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a Float64Array");
  auto a = v.As<Napi::Float64Array>();
  if (a.ElementLength() != want)
    ThrowCode(v.Env(), "SHAPE_MISMATCH", std::string(what) + " has the wrong length for p and m");
  return a.Data();
}

size_t GetSize(const Napi::Value& v, const char* what) {
  if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0)
    ThrowCode(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a non-negative integer");
  return static_cast<size_t>(v.As<Napi::Number>().Int64Value());
}

Napi::Value Accumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32View H = GetF32(info[0], "H");
  F32View Y = GetF32(info[1], "Y");
  size_t n = GetSize(info[2], "n"), p = GetSize(info[3], "p"), m = GetSize(info[4], "m");
  if (H.length != n * p) ThrowCode(env, "SHAPE_MISMATCH", "H must hold n×p values");
  if (Y.length != n * m) ThrowCode(env, "SHAPE_MISMATCH", "Y must hold n×m values");
  GetF64(info[5], "G", (p + 1) * (p + 1));
  GetF64(info[6], "C", (p + 1) * m);
  // Inputs copied for the worker and G, C written back when it settles (async_job.h says why).
  Owned<float> h = CopyTyped<float>(info[0], "H"), y = CopyTyped<float>(info[1], "Y");
  Owned<double> g = CopyTyped<double>(info[5], "G"), c = CopyTyped<double>(info[6], "C");
  auto g_ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(info[5]));
  auto c_ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(info[6]));
  return AsyncJob::Start(
      env, info[7], [=](JobControl& ctl) { ridge_accumulate(ctl, h->data(), n, p, y->data(), m, g->data(), c->data()); },
      [g, c, g_ref, c_ref](Napi::Env e) -> Napi::Value {
        WriteBack(*g_ref, *g, "G");
        WriteBack(*c_ref, *c, "C");
        return e.Undefined();
      });
}

Napi::Value Solve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t p = GetSize(info[2], "p"), m = GetSize(info[3], "m");
  GetF64(info[0], "G", (p + 1) * (p + 1));
  GetF64(info[1], "C", (p + 1) * m);
  Owned<double> G = CopyTyped<double>(info[0], "G"), C = CopyTyped<double>(info[1], "C");  // for the worker
  if (!info[4].IsNumber()) ThrowCode(env, "INVALID_ARGUMENT", "lambdaRel must be a number");
  double lambda_rel = info[4].As<Napi::Number>().DoubleValue();
  auto X = std::make_shared<std::vector<double>>((p + 1) * m);
  return AsyncJob::Start(
      env, info[5], [=](JobControl& ctl) { ridge_solve(ctl, G->data(), C->data(), p, m, lambda_rel, X->data()); },
      [X](Napi::Env env) -> Napi::Value {
        auto out = Napi::Float64Array::New(env, X->size());
        std::copy(X->begin(), X->end(), out.Data());
        return out;
      });
}

Napi::Value MatmulABt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32View A = GetF32(info[0], "A");
  F32View B = GetF32(info[1], "B");
  size_t M = GetSize(info[2], "M"), N = GetSize(info[3], "N"), K = GetSize(info[4], "K");
  if (A.length != M * K) ThrowCode(env, "SHAPE_MISMATCH", "A must hold M×K values");
  if (B.length != N * K) ThrowCode(env, "SHAPE_MISMATCH", "B must hold N×K values");
  auto C = std::make_shared<std::vector<float>>(M * N);
  Owned<float> a_own = CopyTyped<float>(info[0], "A"), b_own = CopyTyped<float>(info[1], "B");  // for the worker
  return AsyncJob::Start(
      env, info[5],
      [=](JobControl& ctl) {
        // row blocks so a cancel lands within one block
        const size_t block = 1024;
        for (size_t r = 0; r < M; r += block) {
          ctl.check();
          size_t rows = std::min(block, M - r);
          sgemm(&ctl.pool(), false, true, rows, N, K, 1.f, a_own->data() + r * K, K, b_own->data(), K, 0.f, C->data() + r * N, N);
          ctl.progress(double(r + rows), double(M));
        }
      },
      [C](Napi::Env env) -> Napi::Value {
        auto out = Napi::Float32Array::New(env, C->size());
        std::copy(C->begin(), C->end(), out.Data());
        return out;
      });
}

Napi::Value GreedySelect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t p = GetSize(info[2], "p"), m = GetSize(info[3], "m");
  GetF64(info[0], "G", (p + 1) * (p + 1));
  GetF64(info[1], "C", (p + 1) * m);
  Owned<double> G = CopyTyped<double>(info[0], "G"), C = CopyTyped<double>(info[1], "C");  // for the worker
  if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    ThrowCode(env, "INVALID_ARGUMENT", "forced must be an Int32Array");
  auto f = info[4].As<Napi::Int32Array>();
  std::vector<int32_t> forced(f.Data(), f.Data() + f.ElementLength());
  size_t count = GetSize(info[5], "count");
  if (!info[6].IsNumber()) ThrowCode(env, "INVALID_ARGUMENT", "lambdaRel must be a number");
  double lambda_rel = info[6].As<Napi::Number>().DoubleValue();
  auto out = std::make_shared<std::vector<int32_t>>();
  return AsyncJob::Start(
      env, info[7], [=](JobControl& ctl) { *out = greedy_select(ctl, G->data(), C->data(), p, m, forced, count, lambda_rel); },
      [out](Napi::Env env) -> Napi::Value {
        auto a = Napi::Int32Array::New(env, out->size());
        std::copy(out->begin(), out->end(), a.Data());
        return a;
      });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("greedySelect", Napi::Function::New(env, GreedySelect, "greedySelect"));
  exports.Set("matmulABt", Napi::Function::New(env, MatmulABt, "matmulABt"));
  exports.Set("ridgeAccumulate", Napi::Function::New(env, Accumulate, "ridgeAccumulate"));
  exports.Set("ridgeSolve", Napi::Function::New(env, Solve, "ridgeSolve"));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
