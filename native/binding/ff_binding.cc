// ffApply(X, n, d, units, ff, activation, output, onProgress) -> {promise, cancel}
//   An FF on inputs X [n, d], whole on the native pool: with output false, its hidden units
//     H [n, units] = act(X·W_inᵀ + b_in)                    (GPT-2, ViT, Marian)
//     H [n, units] = act(X·W_gateᵀ + b_gate) · (X·W_inᵀ + b_in)   (with a gate: SwiGLU and friends)
//   with output true, its output H·W_outᵀ + b_out [n, d]. ff = { wIn, bIn?, wGate?, bGate?, wOut?, bOut? }.
//   activation: "gelu_new" | "gelu" | "silu" | "swish" | "relu".
// Why one job: the TypeScript merge methods (select, refit) need hidden units of tens of millions of entries
// per batch. Computed in JS, or moved between several jobs through JS arrays, that was the host's event loop
// stalled for tens to hundreds of ms (the loop, the copies, the collections); here only X and the weights
// are copied in, and the result is handed over without a copy.
#include "binding/ff_binding.h"

#include <cstdint>
#include <string>

#include "binding/registry.h"

namespace ffm::binding {

namespace {

nn::Activation ActivationOf(Napi::Env env, const Napi::Value& v) {
  const std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (name == "gelu_new") return nn::Activation::GeluNew;
  if (name == "gelu") return nn::Activation::GeluErf;
  if (name == "silu" || name == "swish") return nn::Activation::Silu;
  if (name == "relu") return nn::Activation::Relu;
  ThrowCode(env, "INVALID_ARGUMENT", "unknown FF activation \"" + name + "\" (gelu_new, gelu, silu, swish, relu)");
}

// Member `key` of ff copied, `want` floats exactly; nullptr when absent (unless required).
Owned<float> Member(const Napi::Object& ff, const char* key, size_t want, bool required) {
  Napi::Value v = ff.Get(key);
  if (v.IsNull() || v.IsUndefined()) {
    if (required) ThrowCode(ff.Env(), "INVALID_ARGUMENT", std::string("the FF needs ") + key);
    return nullptr;
  }
  const F32View view = GetF32(v, key);
  if (view.length != want)
    ThrowCode(ff.Env(), "SHAPE_MISMATCH", std::string("the FF's ") + key + " must hold " + std::to_string(want) +
                                              " floats (got " + std::to_string(view.length) + ")");
  return CopyTyped<float>(v, key);
}

Napi::Value FfApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7) ThrowCode(env, "INVALID_ARGUMENT", "ffApply expects (X, n, d, units, ff, activation, output, onProgress?)");
  const size_t n = GetCount(info[1], "n"), d = GetCount(info[2], "d"), units = GetCount(info[3], "units");
  if (d == 0 || units == 0) ThrowCode(env, "INVALID_ARGUMENT", "ffApply: d and units must be positive");
  const F32View X = GetF32(info[0], "X");
  if (X.length != n * d) ThrowCode(env, "SHAPE_MISMATCH", "ffApply: X must hold n × d floats");
  const bool output = info[6].ToBoolean();
  FFCopy ff = CopyFF(info[4], d, units, info[5], output);
  Owned<float> x = CopyTyped<float>(info[0], "X");
  auto out = std::make_shared<std::vector<float>>();
  return AsyncJob::Start(
      env, info.Length() > 7 ? info[7] : env.Undefined(),
      [=](JobControl& ctl) {
        ThreadPool& pool = ctl.pool();
        std::vector<float> h(n * units), scratch;
        ctl.check();
        FFHidden(pool, ff, x->data(), n, h.data(), scratch);
        if (!output) {
          *out = std::move(h);
          return;
        }
        ctl.check();
        out->resize(n * d);
        nn::linear(&pool, h.data(), n, units, nn::Weight(ff.w_out->data()), ff.b_out ? ff.b_out->data() : nullptr, d, out->data());
      },
      [out](Napi::Env e) { return ExternalF32(e, std::move(*out)); });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("ffApply", Napi::Function::New(env, FfApply, "ffApply"));
}

}  // namespace

FFCopy CopyFF(const Napi::Value& v, size_t d, size_t units, const Napi::Value& activation, bool with_out) {
  Napi::Env env = v.Env();
  if (!v.IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "the FF must be an object of Float32Arrays");
  const Napi::Object ff = v.As<Napi::Object>();
  FFCopy c;
  c.d = d;
  c.units = units;
  c.act = ActivationOf(env, activation);
  c.w_in = Member(ff, "wIn", units * d, true);
  c.b_in = Member(ff, "bIn", units, false);
  c.w_gate = Member(ff, "wGate", units * d, false);
  c.b_gate = Member(ff, "bGate", units, false);
  if (c.b_gate && !c.w_gate) ThrowCode(env, "INVALID_ARGUMENT", "the FF has bGate without wGate");
  if (with_out) {
    c.w_out = Member(ff, "wOut", d * units, true);
    c.b_out = Member(ff, "bOut", d, false);
  }
  return c;
}

void FFHidden(ThreadPool& pool, const FFCopy& ff, const float* x, size_t rows, float* h, std::vector<float>& scratch) {
  nn::linear(&pool, x, rows, ff.d, nn::Weight(ff.w_in->data()), ff.b_in ? ff.b_in->data() : nullptr, ff.units, h);
  if (!ff.w_gate) {
    nn::activate(&pool, ff.act, h, rows * ff.units);
    return;
  }
  scratch.resize(rows * ff.units);
  nn::linear(&pool, x, rows, ff.d, nn::Weight(ff.w_gate->data()), ff.b_gate ? ff.b_gate->data() : nullptr, ff.units,
             scratch.data());
  nn::gated_activate(&pool, ff.act, scratch.data(), h, rows * ff.units);
}

Napi::Value ExternalF32(Napi::Env env, std::vector<float>&& v) {
  if (v.empty()) return Napi::Float32Array::New(env, 0);
  auto* owned = new std::vector<float>(std::move(v));
  const int64_t bytes = static_cast<int64_t>(owned->size() * sizeof(float));
  auto buf = Napi::ArrayBuffer::New(
      env, owned->data(), owned->size() * sizeof(float),
      [bytes](Napi::Env e, void*, std::vector<float>* p) {
        delete p;
        Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
      },
      owned);
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return Napi::Float32Array::New(env, owned->size(), buf, 0);
}

FFMERGE_BINDING(Init);
}  // namespace ffm::binding
