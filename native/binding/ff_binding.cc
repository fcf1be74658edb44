// new NativeFF(units, d, { bIn, gate, bGate })   an FF's input side (W_in, b_in?, W_gate?, b_gate?) in native
//   memory, zero until filled: .set(offset, ff) copies ff's rows (a JS FF of wIn.length / d units) to rows
//   offset…, on the main thread; .touch(offset, units, onProgress?) -> {promise, cancel} first faults those
//   rows' pages in on the pool (fresh pages cost this VM about 1 s per 360 MB, which the main thread must
//   not pay: the copy itself is then a plain memcpy); .rows(units: Int32Array, onProgress?) -> {promise<{ wIn, bIn?, wGate?, bGate? }>, cancel} copies
//   the listed rows out; .dispose() frees it once no job reads it. Jobs take it wherever they take an FF.
// ffApply(X, n, d, units, ff, activation, output, onProgress) -> {promise, cancel}
//   An FF on inputs X [n, d], whole on the native pool: with output false, its hidden units
//     H [n, units] = act(X·W_inᵀ + b_in)                    (GPT-2, ViT, Marian)
//     H [n, units] = act(X·W_gateᵀ + b_gate) · (X·W_inᵀ + b_in)   (with a gate: SwiGLU and friends)
//   with output true, its output H·W_outᵀ + b_out [n, d]. ff = { wIn, bIn?, wGate?, bGate?, wOut?, bOut? }.
//   activation: "gelu_new" | "gelu" | "silu" | "swish" | "relu".
// Why one job: the merge methods (select, refit) need hidden units of tens of millions of entries per batch;
// computed in JS they stall the event loop. Here only X and the weights are copied in, and the result is
// handed over without a copy.
#include "binding/ff_binding.h"

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "binding/reaper.h"
#include "binding/registry.h"
#include "binding/staged_floats.h"
#include "core/error.h"
#include "core/finite.h"

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
SharedFloats Member(const Napi::Object& ff, const char* key, size_t want, bool required) {
  Napi::Value v = ff.Get(key);
  if (v.IsNull() || v.IsUndefined()) {
    if (required) ThrowCode(ff.Env(), "INVALID_ARGUMENT", std::string("the FF needs ") + key);
    return nullptr;
  }
  const F32View view = GetF32(v, key);
  if (view.length != want)
    ThrowCode(ff.Env(), "SHAPE_MISMATCH", std::string("the FF's ") + key + " must hold " + std::to_string(want) +
                                              " floats (got " + std::to_string(view.length) + ")");
  Owned<float> copy = CopyTyped<float>(v, key);
  return SharedFloats(copy, copy->data());
}

// calloc'd: a large buffer is fresh zero pages from the kernel, so creating one costs the main thread
// nothing in proportion to its size.
std::shared_ptr<float> Zeros(Napi::Env env, size_t count) {
  if (count == 0) return nullptr;
  float* p = count > SIZE_MAX / sizeof(float) ? nullptr : static_cast<float*>(std::calloc(count, sizeof(float)));
  if (!p) ThrowCode(env, "OUT_OF_MEMORY", "not enough memory for a native FF of " + std::to_string(count) + " floats");
  return std::shared_ptr<float>(p, std::free);
}

// Marks objects made by NativeFF, so CopyFF never unwraps another native object as one.
constexpr napi_type_tag kNativeFFTag = {0x3b9e0c6d2a714f58ULL, 0x91c4e7a0f25d3b86ULL};

class NativeFF : public Napi::ObjectWrap<NativeFF> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeFF",
                       {InstanceMethod<&NativeFF::Set>("set"), InstanceMethod<&NativeFF::Touch>("touch"),
                        InstanceMethod<&NativeFF::Rows>("rows"), InstanceMethod<&NativeFF::Dispose>("dispose")});
  }

  explicit NativeFF(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeFF>(info) {
    Napi::Env env = info.Env();
    reaper_ = ReaperOf(env);
    units_ = GetCount(info[0], "units");
    d_ = GetCount(info[1], "d");
    if (units_ == 0 || d_ == 0) ThrowCode(env, "INVALID_ARGUMENT", "a NativeFF needs positive units and d");
    if (units_ > SIZE_MAX / d_) ThrowCode(env, "OUT_OF_MEMORY", "a NativeFF of this size does not fit in memory");
    const Napi::Object parts = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
    const auto has = [&](const char* key) { return parts.Get(key).ToBoolean().Value(); };
    if (has("bGate") && !has("gate")) ThrowCode(env, "INVALID_ARGUMENT", "a NativeFF with bGate needs gate");
    buf_[kWIn] = Zeros(env, units_ * d_);
    if (has("bIn")) buf_[kBIn] = Zeros(env, units_);
    if (has("gate")) buf_[kWGate] = Zeros(env, units_ * d_);
    if (has("bGate")) buf_[kBGate] = Zeros(env, units_);
    bytes_ = int64_t(Floats() * sizeof(float));
    Napi::MemoryManagement::AdjustExternalMemory(env, bytes_);
    info.This().As<Napi::Object>().TypeTag(&kNativeFFTag);
  }

  ~NativeFF() override { Release(); }

  // Shares the buffers with a job (no copy).
  FFCopy Share(Napi::Env env, size_t d, size_t units, nn::Activation act) const {
    if (!buf_[kWIn]) ThrowCode(env, "INVALID_STATE", "this NativeFF was disposed");
    if (d != d_ || units != units_)
      ThrowCode(env, "SHAPE_MISMATCH", "the NativeFF holds " + std::to_string(units_) + " units of width " +
                                           std::to_string(d_) + ", not " + std::to_string(units) + " × " + std::to_string(d));
    return {d_, units_, act, buf_[kWIn], buf_[kBIn], buf_[kWGate], buf_[kBGate], nullptr, nullptr};
  }

 private:
  enum Part { kWIn, kBIn, kWGate, kBGate, kParts };
  static constexpr const char* kKeys[kParts] = {"wIn", "bIn", "wGate", "bGate"};
  size_t Width(int part) const { return part == kWIn || part == kWGate ? d_ : 1; }
  size_t Floats() const {
    size_t n = 0;
    for (int k = 0; k < kParts; ++k) n += buf_[k] ? units_ * Width(k) : 0;
    return n;
  }

  // Writers (set, touch) wait for readers: a job holds its own reference to each buffer while it runs.
  void ThrowIfRead(Napi::Env env) const {
    for (const auto& b : buf_)
      if (b && b.use_count() > 1) ThrowCode(env, "BUSY", "a native job is reading this NativeFF; await it before set()");
  }

  void Release() {
    if (!buf_[kWIn]) return;
    // freed off the main thread; a job reading keeps its own reference
    for (int k = 0; k < kParts; ++k) {
      const float* data = buf_[k].get();
      const size_t bytes = units_ * Width(k) * sizeof(float);
      reaper_->Drop(std::move(buf_[k]), [data, bytes] { release_pages(data, bytes); });
    }
    Napi::MemoryManagement::AdjustExternalMemory(Env(), -bytes_);
  }

  // set(offset, ff): ff's rows into rows offset…, on the main thread (one layer of a pool at a time).
  Napi::Value Set(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!buf_[kWIn]) ThrowCode(env, "INVALID_STATE", "this NativeFF was disposed");
    ThrowIfRead(env);
    const size_t offset = GetCount(info[0], "offset");
    if (!info[1].IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "set(offset, ff): ff must be an object of Float32Arrays");
    const Napi::Object ff = info[1].As<Napi::Object>();
    const size_t n = GetF32(ff.Get("wIn"), "wIn").length / d_;
    if (n * d_ != GetF32(ff.Get("wIn"), "wIn").length || offset > units_ || n > units_ - offset)
      ThrowCode(env, "SHAPE_MISMATCH", "set(): wIn must hold whole rows of width " + std::to_string(d_) + " that fit in " +
                                           std::to_string(units_) + " units from offset " + std::to_string(offset));
    for (int k = 0; k < kParts; ++k) {
      Napi::Value v = ff.Get(kKeys[k]);
      const bool given = !v.IsNull() && !v.IsUndefined();
      if (given != bool(buf_[k]))
        ThrowCode(env, "INVALID_ARGUMENT", std::string("set(): the FF ") + (given ? "has " : "lacks ") + kKeys[k] +
                                               (given ? ", which this NativeFF was made without" : ", which this NativeFF holds"));
      if (!given) continue;
      const F32View view = GetF32(v, kKeys[k]);
      if (view.length != n * Width(k)) ThrowCode(env, "SHAPE_MISMATCH", std::string("set(): ") + kKeys[k] + " has the wrong length");
      std::memcpy(const_cast<float*>(buf_[k].get()) + offset * Width(k), view.data, view.length * sizeof(float));
    }
    return env.Undefined();
  }

  // touch(offset, units): rows offset… written with zeros in a job, so that their pages exist before set().
  Napi::Value Touch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!buf_[kWIn]) ThrowCode(env, "INVALID_STATE", "this NativeFF was disposed");
    const size_t offset = GetCount(info[0], "offset"), n = GetCount(info[1], "units");
    if (offset > units_ || n > units_ - offset) ThrowCode(env, "SHAPE_MISMATCH", "set(): the rows do not fit in " + std::to_string(units_) + " units from offset " + std::to_string(offset));
    ThrowIfRead(env);
    auto dst = std::make_shared<std::array<SharedFloats, kParts>>(buf_);
    const size_t d = d_;
    return AsyncJob::Start(
        env, info[2],
        [dst, offset, n, d](JobControl& ctl) {
          for (int k = 0; k < kParts; ++k) {
            if (!(*dst)[k]) continue;
            const size_t w = k == kWIn || k == kWGate ? d : 1;
            float* base = const_cast<float*>((*dst)[k].get()) + offset * w;
            ctl.pool().parallel_for(n, 64, [&](size_t b, size_t e) { std::memset(base + b * w, 0, (e - b) * w * sizeof(float)); });
            ctl.check();
          }
        },
        [dst](Napi::Env e) { return e.Undefined(); });
  }

  // rows(units): the listed rows as a JS FF (without W_out), copied in a job.
  Napi::Value Rows(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!buf_[kWIn]) ThrowCode(env, "INVALID_STATE", "this NativeFF was disposed");
    size_t count = 0;
    const int32_t* idx = GetI32(info[0], "units", &count);
    std::vector<size_t> units(count);
    for (size_t i = 0; i < count; ++i) {
      if (idx[i] < 0 || size_t(idx[i]) >= units_) ThrowCode(env, "INVALID_ARGUMENT", "rows(): a unit index is out of range");
      units[i] = size_t(idx[i]);
    }
    auto src = std::make_shared<std::array<SharedFloats, kParts>>(buf_);
    auto out = std::make_shared<std::array<std::vector<float>, kParts>>();
    const size_t d = d_;
    return AsyncJob::Start(
        env, info[1],
        [=](JobControl& ctl) {
          for (int k = 0; k < kParts; ++k) {
            if (!(*src)[k]) continue;
            const size_t w = k == kWIn || k == kWGate ? d : 1;
            (*out)[k].resize(units.size() * w);
            ctl.pool().parallel_for(units.size(), 64, [&](size_t b, size_t e) {
              for (size_t i = b; i < e; ++i) std::memcpy((*out)[k].data() + i * w, (*src)[k].get() + units[i] * w, w * sizeof(float));
            });
            ctl.check();
          }
        },
        [out, src](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          for (int k = 0; k < kParts; ++k)
            if ((*src)[k]) o.Set(kKeys[k], ExternalF32(e, std::move((*out)[k])));
          return o;
        });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  size_t units_ = 0, d_ = 0;
  int64_t bytes_ = 0;
  std::array<SharedFloats, kParts> buf_;
  std::shared_ptr<Reaper> reaper_;
};

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
        nn::linear(&pool, h.data(), n, units, nn::Weight(ff.w_out.get()), ff.b_out.get(), d, out->data());
      },
      [out](Napi::Env e) { return ExternalF32(e, std::move(*out)); });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("ffApply", Napi::Function::New(env, FfApply, "ffApply"));
  exports.Set("NativeFF", NativeFF::Define(env));
}

}  // namespace

FFCopy CopyFF(const Napi::Value& v, size_t d, size_t units, const Napi::Value& activation, bool with_out) {
  Napi::Env env = v.Env();
  if (!v.IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "the FF must be an object of Float32Arrays");
  const Napi::Object ff = v.As<Napi::Object>();
  if (ff.CheckTypeTag(&kNativeFFTag)) {
    if (with_out) ThrowCode(env, "INVALID_ARGUMENT", "a NativeFF holds no W_out: this job needs a JS FF");
    return NativeFF::Unwrap(ff)->Share(env, d, units, ActivationOf(env, activation));
  }
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

FFRows ReadFFRows(const Napi::CallbackInfo& info, size_t units, size_t m) {
  Napi::Env env = info.Env();
  FFRows r;
  r.m = m;
  r.n = GetCount(info[1], "n");
  size_t x_len = 0, y_len = 0;
  r.x = StagedOrLength(info[0], "X", &x_len);
  if (r.n == 0 ? x_len != 0 : x_len % r.n != 0) ThrowCode(env, "SHAPE_MISMATCH", "X must hold n rows");
  r.d = r.n ? x_len / r.n : 1;
  r.ff = CopyFF(info[2], r.d, units, info[3], false);
  r.y = StagedOrLength(info[4], "Y", &y_len);
  if (y_len != r.n * m) ThrowCode(env, "SHAPE_MISMATCH", "Y must hold n × m values");
  if (!r.x) r.x = CopyTyped<float>(info[0], "X");
  if (!r.y) r.y = CopyTyped<float>(info[4], "Y");
  return r;
}

void FFHidden(ThreadPool& pool, const FFCopy& ff, const float* x, size_t rows, float* h, std::vector<float>& scratch) {
  nn::linear(&pool, x, rows, ff.d, nn::Weight(ff.w_in.get()), ff.b_in.get(), ff.units, h);
  if (!ff.w_gate) {
    nn::activate(&pool, ff.act, h, rows * ff.units);
    return;
  }
  scratch.resize(rows * ff.units);
  nn::linear(&pool, x, rows, ff.d, nn::Weight(ff.w_gate.get()), ff.b_gate.get(), ff.units,
             scratch.data());
  nn::gated_activate(&pool, ff.act, scratch.data(), h, rows * ff.units);
}

void SumFFRows(JobControl& ctl, const FFRows& in, size_t block_floats, const FFRowWords& words,
               const std::function<void(JobControl&, const float*, const float*, size_t, size_t)>& sum, const std::function<void()>& broken) {
  const size_t n = in.n, d = in.d, units = in.ff.units, m = in.m;
  const char* tail = "; the batch was not added";
  refuse_non_finite(ctl, in.x->data(), n, d, words.code, words.inputs, "value", tail);
  refuse_non_finite(ctl, in.y->data(), n, m, words.code, words.targets, words.column, tail);
  const size_t block = std::max<size_t>(1, std::min<size_t>(n, block_floats / units));
  std::vector<float> h(std::min(block, n) * units), scratch;
  // each block's own step reports nothing: its counts would restart the batch's
  JobControl inner = ctl.nested();
  size_t r = 0;
  try {
    for (; r < n; r += block) {
      ctl.check();
      const size_t rows = std::min(block, n - r);
      FFHidden(ctl.pool(), in.ff, in.x->data() + r * d, rows, h.data(), scratch);
      sum(inner, h.data(), in.y->data() + r * m, rows, r);
      ctl.progress(double(r + rows), double(n));
    }
  } catch (const Error& e) {
    if (r == 0) throw;
    // hidden units that overflowed in a later block
    broken();
    const std::string what = e.what();
    throw Error(e.code(), what.substr(0, what.rfind(tail)) + " (in the block from row " + std::to_string(r) + "); the " +
                              std::to_string(r) + " rows before it were added, so " + words.sums + " can no longer be used");
  } catch (...) {
    if (r > 0) broken();
    throw;
  }
}

namespace {
template <typename T>
Napi::Value External(Napi::Env env, std::vector<T>&& v) {
  if (v.empty()) return Napi::TypedArrayOf<T>::New(env, 0);
  auto* owned = new std::vector<T>(std::move(v));
  const int64_t bytes = static_cast<int64_t>(owned->size() * sizeof(T));
  auto buf = Napi::ArrayBuffer::New(
      env, owned->data(), owned->size() * sizeof(T),
      [bytes, reaper = ReaperOf(env)](Napi::Env e, void*, std::vector<T>* p) {
        reaper->Drop(std::shared_ptr<const std::vector<T>>(p), PagesOf(p));  // hundreds of MB at 7B width
        Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
      },
      owned);
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return Napi::TypedArrayOf<T>::New(env, owned->size(), buf, 0);
}
}  // namespace

Napi::Value ExternalF32(Napi::Env env, std::vector<float>&& v) { return External(env, std::move(v)); }
Napi::Value ExternalF64(Napi::Env env, std::vector<double>&& v) { return External(env, std::move(v)); }

FFMERGE_BINDING(Init);
}  // namespace ffm::binding
