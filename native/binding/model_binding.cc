// Models in native memory for JS: create from canonical tensors, make FF-override views, run forward jobs.
//
// A JS Model holds an External wrapping a shared_ptr<const Model>; every forward job takes its own copy
// of that shared_ptr, so dispose() during a running job is safe (the weights go when the job ends).
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "binding/addon_data.h"
#include "binding/async_job.h"
#include "binding/correlation_handle.h"
#include "binding/ff_binding.h"
#include "binding/model_handle.h"
#include "binding/reaper.h"
#include "binding/registry.h"
#include "binding/spec_binding.h"
#include "binding/staged_floats.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/model/correlation_capture.h"
#include "core/model/forward.h"
#include "core/model/weights.h"

namespace ffm::binding {

using model::Buffer;
using model::Model;

namespace {
struct ModelHandle {
  std::shared_ptr<const Model> model;
  std::shared_ptr<Reaper> reaper;  // a view's last reference frees its FF copies (1 GB at 7B width) there
  int64_t accounted = 0;           // bytes reported to V8 as this handle's (AdjustExternalMemory), until dropped
};

// An FF's tensors under their JS names.
const std::pair<const char*, model::Tensor model::FFWeights::*> kFFSlots[] = {
    {"wIn", &model::FFWeights::w_in},     {"bIn", &model::FFWeights::b_in}, {"wGate", &model::FFWeights::w_gate},
    {"bGate", &model::FFWeights::b_gate}, {"wOut", &model::FFWeights::w_out}, {"bOut", &model::FFWeights::b_out}};

// Calls fn(data, bytes) for the matrices that model alone holds. A tensor's buffer may be shared with other
// models (a view shares the base model's, a tie shares one FF between layers), so only a buffer held once
// counts, and an FF only where every reference to it is one of this model's layers.
template <typename Fn>
void ForOwnedMatrices(const Model* m, Fn fn) {
  const auto tensor = [&](const model::Tensor& t) {
    if (t.buf && t.buf.use_count() == 1) fn(static_cast<const void*>(t.buf->data()), t.buf->size() * sizeof(float));
    if (t.half && t.half.use_count() == 1) fn(static_cast<const void*>(t.half.get()), t.half_size * sizeof(uint16_t));
  };
  std::map<const model::FFWeights*, long> refs;
  for (const auto& l : m->w.layers)
    if (l.ff) ++refs[l.ff.get()];
  for (const auto& l : m->w.layers) {
    if (!l.ff || l.ff.use_count() != refs[l.ff.get()]) continue;
    refs[l.ff.get()] = -1;  // once per FF
    for (const auto& [key, slot] : kFFSlots) tensor((*l.ff).*slot);
  }
  for (const auto& l : m->w.layers)
    for (const model::Tensor* t : {&l.qkv_w, &l.o_w, &l.xq_w, &l.xkv_w, &l.xo_w}) tensor(*t);
  for (const model::Tensor* t : {&m->w.tok_emb, &m->w.pos_emb, &m->w.lm_head_w, &m->w.patch_w, &m->w.classifier_w}) tensor(*t);
}

// release_pages for a model whose last reference the reaper holds (reaper.h says why): the matrices it alone owns.
std::function<void()> ModelPages(const Model* m) {
  return [m] { ForOwnedMatrices(m, [](const void* data, size_t bytes) { release_pages(data, bytes); }); };
}

void Drop(Napi::Env env, ModelHandle* h) {
  // what V8 was told this handle holds is returned once, at dispose() or at collection, whichever is first
  if (h->accounted != 0) Napi::MemoryManagement::AdjustExternalMemory(env, -h->accounted);
  h->accounted = 0;
  const Model* raw = h->model.get();
  h->reaper->Drop(std::move(h->model), ModelPages(raw));
}

}  // namespace

Napi::Value WrapModel(Napi::Env env, std::shared_ptr<const Model> m) {
  auto* h = new ModelHandle{std::move(m), ReaperOf(env)};
  // A handle is a few bytes to V8, which would hold hundreds of undisposed models (gigabytes) before it
  // collected one: it is told the matrices this model alone holds (a view: its own FF copies) (tester GC).
  ForOwnedMatrices(h->model.get(), [h](const void*, size_t bytes) { h->accounted += int64_t(bytes); });
  if (h->accounted != 0) Napi::MemoryManagement::AdjustExternalMemory(env, h->accounted);
  return Napi::External<ModelHandle>::New(env, h, [](Napi::Env e, ModelHandle* p) {
    Drop(e, p);
    delete p;
  });
}

std::shared_ptr<const Model> UnwrapModel(const Napi::Value& v) {
  if (!v.IsExternal()) ThrowCode(v.Env(), "INVALID_ARGUMENT", "expected a native model handle");
  auto* h = v.As<Napi::External<ModelHandle>>().Data();
  if (!h->model) ThrowCode(v.Env(), "INVALID_ARGUMENT", "the model was disposed");
  return h->model;
}

namespace {

size_t GetSize(const Napi::Object& o, const char* key, size_t dflt, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) ThrowCode(o.Env(), "INVALID_ARGUMENT", std::string("model spec: missing ") + key);
    return dflt;
  }
  double d = v.ToNumber().DoubleValue();
  if (!(d >= 0) || d != double(size_t(d)))
    ThrowCode(o.Env(), "INVALID_ARGUMENT", std::string("model spec: ") + key + " must be a non-negative integer");
  return size_t(d);
}

std::string GetStr(const Napi::Object& o, const char* key, const char* dflt) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(dflt);
}

// Copies JS Float32Arrays into native buffers; the same JS memory passed twice (a tie) becomes one buffer.
// StagedFloats (staged_floats.h) are shared as they are: their copy was made before, a slice at a time.
struct BufferCopier {
  std::map<const float*, Buffer> seen;
  Buffer copy(const Napi::Value& v, const std::string& what) {
    if (Buffer staged = SharedStaged(v)) return staged;
    F32View a = GetF32(v, what.c_str());
    auto it = seen.find(a.data);
    if (it != seen.end() && it->second->size() == a.length) return it->second;
    auto b = std::make_shared<const std::vector<float>>(a.data, a.data + a.length);
    seen[a.data] = b;
    return b;
  }
};

// modelCreate(spec, tensors: {slot: Float32Array}) → handle
Napi::Value ModelCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "modelCreate(spec, tensors)");
  model::ModelSpec spec = ParseModelSpec(info[0].As<Napi::Object>());
  Napi::Object t = info[1].As<Napi::Object>();
  Napi::Array keys = t.GetPropertyNames();
  BufferCopier copier;
  std::map<std::string, Buffer> tensors;
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
    tensors[k] = copier.copy(t.Get(k), "tensor " + k);
  }
  return CallCore(env, [&] { return WrapModel(env, std::make_shared<const Model>(model::build_model(spec, tensors))); });
}

std::shared_ptr<const model::FFWeights> ParseFF(const Napi::Object& o, BufferCopier& copier, const std::string& where) {
  auto ff = std::make_shared<model::FFWeights>();
  for (const auto& [key, slot] : kFFSlots) {
    Napi::Value v = o.Get(key);
    if (!v.IsUndefined() && !v.IsNull()) ((*ff).*slot).buf = copier.copy(v, where + "." + key);
  }
  return ff;
}

// modelWithFF(handle, ffs: FFWeights[], layers: number[], which: number[]) → handle; layer layers[i] gets
// ffs[which[i]], so one FF object given to several layers is one native copy.
Napi::Value ModelWithFF(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto base = UnwrapModel(info[0]);
  if (!info[1].IsArray() || !info[2].IsArray() || !info[3].IsArray())
    ThrowCode(env, "INVALID_ARGUMENT", "modelWithFF(handle, ffs, layers, which)");
  Napi::Array ffs = info[1].As<Napi::Array>(), layers = info[2].As<Napi::Array>(), which = info[3].As<Napi::Array>();
  BufferCopier copier;
  std::vector<std::shared_ptr<const model::FFWeights>> unique;
  for (uint32_t i = 0; i < ffs.Length(); ++i)
    unique.push_back(ParseFF(ffs.Get(i).As<Napi::Object>(), copier, "ff[" + std::to_string(i) + "]"));
  std::vector<std::pair<size_t, std::shared_ptr<const model::FFWeights>>> overrides;
  for (uint32_t i = 0; i < layers.Length(); ++i) {
    uint32_t w = which.Get(i).ToNumber().Uint32Value();
    if (w >= unique.size()) ThrowCode(env, "INVALID_ARGUMENT", "modelWithFF: FF index out of range");
    overrides.emplace_back(layers.Get(i).ToNumber().Uint32Value(), unique[w]);
  }
  return CallCore(env, [&] { return WrapModel(env, model::with_ff(base, overrides)); });
}

// modelFFWeights(handle, layer) → {wIn, bIn?, wGate?, bGate?, wOut, bOut?} (copies)
Napi::Value ModelFFWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  uint32_t l = info[1].ToNumber().Uint32Value();
  if (l >= m->spec.layers) ThrowCode(env, "INVALID_ARGUMENT", "layer " + std::to_string(l) + " is out of range");
  // A streamed layer's FF is read from disk here, synchronously (one layer's FF; the merge asks for a
  // window's worth), unless a view overrides it.
  JobControl ctl(*GetAddonData(env).pool);
  const auto held = CallCore(env, [&] { return model::layer_weights(ctl, *m, l); });
  Napi::Object o = Napi::Object::New(env);
  for (const auto& [key, slot] : kFFSlots) {
    const model::Tensor& t = (*held->ff).*slot;
    if (!t) continue;
    auto a = Napi::Float32Array::New(env, t.size());
    t.read_f32(0, t.size(), a.Data());  // a 16-bit weight comes out widened: JS always sees float32
    o.Set(key, a);
  }
  return o;
}

// modelFFWeightsAsync(handle, layer, onProgress) → {promise, cancel}: the copies of modelFFWeights, made in a
// job: a streamed layer is read (or mapped) and its 16-bit matrices widened on the pool, not on the JS
// thread (at 7B widths that is ~0.5 GB of float32 a layer, a few hundred ms). The arrays are handed to JS
// without a further copy.
Napi::Value ModelFFWeightsAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  uint32_t l = info[1].ToNumber().Uint32Value();
  if (l >= m->spec.layers) ThrowCode(env, "INVALID_ARGUMENT", "layer " + std::to_string(l) + " is out of range");
  auto out = std::make_shared<std::vector<std::pair<const char*, std::vector<float>>>>();
  return AsyncJob::Start(
      env, info[2],
      [m, l, out](JobControl& ctl) {
        std::shared_ptr<const model::LayerWeights> held = model::layer_weights(ctl, *m, l);
        for (const auto& [key, slot] : kFFSlots) {
          ctl.check();
          const model::Tensor& t = (*held->ff).*slot;
          if (!t) continue;
          std::vector<float> v(t.size());
          t.read_f32(0, v.size(), v.data());  // 16-bit weights come out widened, as modelFFWeights
          out->emplace_back(key, std::move(v));
        }
      },
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        for (auto& [k, v] : *out) o.Set(k, ExternalF32(env, std::move(v)));
        out->clear();
        return o;
      });
}

// modelSharesFF(a, layerA, b, layerB) → whether the two layers use one native FF (ties, views).
Napi::Value ModelSharesFF(const Napi::CallbackInfo& info) {
  auto a = UnwrapModel(info[0]);
  auto b = UnwrapModel(info[2]);
  uint32_t la = info[1].ToNumber().Uint32Value(), lb = info[3].ToNumber().Uint32Value();
  if (la >= a->spec.layers || lb >= b->spec.layers) ThrowCode(info.Env(), "INVALID_ARGUMENT", "layer out of range");
  const auto& A = a->w.layers[la];
  const auto& B = b->w.layers[lb];
  // streamed layers without an override use the stored FF of their stream layer
  if (!A.ff && !B.ff) return Napi::Boolean::New(info.Env(), A.streamed >= 0 && A.streamed == B.streamed && a->stream == b->stream);
  return Napi::Boolean::New(info.Env(), A.ff == B.ff);
}

Napi::Value ModelDispose(const Napi::CallbackInfo& info) {
  if (info[0].IsExternal()) Drop(info.Env(), info[0].As<Napi::External<ModelHandle>>().Data());
  return info.Env().Undefined();
}

// What one forward job does with the captured pre-activations: copies the first `for_js` captured layers
// out for JS (args.captureLayers), and streams the layers a claimed accumulator uses into it (args.accumulator),
// both from the one pass. Plain C++ once built: the worker never touches Node-API.
struct ForwardCapture : model::FFCapture {
  size_t for_js = 0, d_ff = 0;
  std::vector<std::vector<float>> layers;  // the copies for JS, in captureLayers order
  std::shared_ptr<CorrelationClaim> claim;  // keeps the accumulator alive and busy until the job's closures go
  std::unique_ptr<model::CorrelationCapture> into;
  void on_batch(JobControl& ctl, const std::vector<const float*>& per_layer, size_t rows) override {
    layers.clear();
    for (size_t i = 0; i < for_js; ++i) layers.emplace_back(per_layer[i], per_layer[i] + rows * d_ff);
    if (into) into->on_batch(ctl, per_layer, rows);
  }
};

// modelForward(handle, args, onProgress) → {promise, cancel}
// args: {ids?: Int32Array, batch, seq, attentionMask?: Uint8Array, hidden?: Float32Array, output,
//        fromLayer?, toLayer?, captureLayers?: number[], inputLayers?: number[], featureMask?: Uint8Array,
//        accumulator?: native CorrelationAccumulator}
// captureLayers come back as `ff` (pre-activations), inputLayers as `ffInputs` (FF inputs), in their order.
// With an accumulator (dims = this stack's layers × d_ff), the pre-activations of the layers it uses are
// added to it inside the job, without a copy for JS; it is claimed (BUSY to others) until the job settles.
Napi::Value ModelForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  if (!info[1].IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "modelForward(handle, args, onProgress)");
  Napi::Object a = info[1].As<Napi::Object>();
  // Every array the worker reads is copied into `owned` (async_job.h says why); `in` points into the copies.
  struct Owned_ {
    Owned<int32_t> ids, token_type_ids;
    Owned<uint8_t> attention_mask, feature_mask, encoder_mask;
    Owned<float> pixels, encoder_hidden;
    model::Buffer hidden;  // a copy, or a StagedFloats' buffer shared
  };
  auto owned = std::make_shared<Owned_>();
  model::ForwardInput in;
  model::ForwardOptions opts;
  in.batch = GetSize(a, "batch", 0, true);
  in.seq = GetSize(a, "seq", 0, true);
  const size_t R = in.batch * in.seq;
  auto get_ids = [&](const char* key, Owned<int32_t>& dst, const std::string& expected) -> const int32_t* {
    if (a.Get(key).IsUndefined()) return nullptr;
    size_t n = 0;
    GetI32(a.Get(key), key, &n);
    if (n != R) ThrowCode(env, "INVALID_ARGUMENT", key + (" has " + std::to_string(n) + " entries, expected ") + expected);
    dst = CopyTyped<int32_t>(a.Get(key), key);
    return dst->data();
  };
  in.ids = get_ids("ids", owned->ids, "batch·seq = " + std::to_string(R));
  auto get_mask = [&](const char* key, Owned<uint8_t>& dst) -> const uint8_t* {
    Napi::Value v = a.Get(key);
    if (v.IsUndefined() || v.IsNull()) return nullptr;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      ThrowCode(env, "INVALID_ARGUMENT", std::string(key) + " must be a Uint8Array");
    auto u = v.As<Napi::Uint8Array>();
    if (u.ElementLength() != R)
      ThrowCode(env, "INVALID_ARGUMENT", std::string(key) + " has " + std::to_string(u.ElementLength()) +
                                             " entries, expected batch·seq = " + std::to_string(R));
    dst = CopyTyped<uint8_t>(v, key);
    return dst->data();
  };
  in.attention_mask = get_mask("attentionMask", owned->attention_mask);
  opts.feature_mask = get_mask("featureMask", owned->feature_mask);
  if (!a.Get("pixels").IsUndefined()) {
    const auto& s = m->spec;
    F32View px = GetF32(a.Get("pixels"), "pixels");
    const size_t want = in.batch * s.channels * s.image_h * s.image_w;
    if (s.input != model::InputKind::Patches || px.length != want)
      ThrowCode(env, "SHAPE_MISMATCH", "pixels has " + std::to_string(px.length) + " values, the model takes batch·" +
                                           std::to_string(s.channels) + "·" + std::to_string(s.image_h) + "·" +
                                           std::to_string(s.image_w) + " = " + std::to_string(want));
    owned->pixels = CopyTyped<float>(a.Get("pixels"), "pixels");
    in.pixels = owned->pixels->data();
  }
  in.token_type_ids = get_ids("tokenTypeIds", owned->token_type_ids, std::to_string(R));
  if (!a.Get("encoderHidden").IsUndefined()) {
    in.encoder_seq = GetSize(a, "encoderSeq", 0, true);
    F32View eh = GetF32(a.Get("encoderHidden"), "encoderHidden");
    if (eh.length != in.batch * in.encoder_seq * m->spec.d_model)
      ThrowCode(env, "INVALID_ARGUMENT", "encoderHidden has " + std::to_string(eh.length) + " values, expected batch·encoderSeq·d");
    owned->encoder_hidden = CopyTyped<float>(a.Get("encoderHidden"), "encoderHidden");
    in.encoder_hidden = owned->encoder_hidden->data();
    Napi::Value em = a.Get("encoderMask");
    if (!em.IsUndefined()) {
      if (!em.IsTypedArray() || em.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
          em.As<Napi::Uint8Array>().ElementLength() != in.batch * in.encoder_seq)
        ThrowCode(env, "INVALID_ARGUMENT", "encoderMask must be a Uint8Array of batch·encoderSeq entries");
      owned->encoder_mask = CopyTyped<uint8_t>(em, "encoderMask");
      in.encoder_mask = owned->encoder_mask->data();
    }
  }
  if (!a.Get("hidden").IsUndefined()) {
    // staged (lib/native/staged.ts): 33 MB a batch at 7B width, not copied into fresh pages on the main thread
    size_t length = 0;
    owned->hidden = StagedOrLength(a.Get("hidden"), "hidden", &length);
    if (length != R * m->spec.d_model)
      ThrowCode(env, "INVALID_ARGUMENT", "hidden has " + std::to_string(length) + " entries, expected batch·seq·d = " +
                                             std::to_string(R * m->spec.d_model));
    if (!owned->hidden) owned->hidden = CopyTyped<float>(a.Get("hidden"), "hidden");
    in.hidden = owned->hidden->data();
  }
  std::string out = GetStr(a, "output", "logits");
  if (out == "logits") opts.output = model::Output::Logits;
  else if (out == "nll") opts.output = model::Output::Nll;
  else if (out == "hidden") opts.output = model::Output::Hidden;
  else ThrowCode(env, "INVALID_ARGUMENT", "output must be 'logits', 'nll' or 'hidden'");
  opts.from_layer = GetSize(a, "fromLayer", 0, false);
  opts.to_layer = GetSize(a, "toLayer", m->spec.layers, false);
  auto get_layers = [&](const char* key, std::vector<size_t>& dst) {
    if (!a.Get(key).IsArray()) return;
    Napi::Array list = a.Get(key).As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) dst.push_back(list.Get(i).ToNumber().Uint32Value());
  };
  get_layers("captureLayers", opts.capture_layers);
  get_layers("inputLayers", opts.input_layers);
  get_layers("outputLayers", opts.output_layers);
  auto capture = std::make_shared<ForwardCapture>();
  capture->d_ff = m->spec.d_ff;
  capture->for_js = opts.capture_layers.size();
  Napi::Value acc_v = a.Get("accumulator");
  if (!acc_v.IsUndefined() && !acc_v.IsNull()) {
    // Claimed last, after every argument check that can throw; a throw below still releases it (unwinding).
    capture->claim = ClaimCorrelationAccumulator(acc_v);
    CorrelationAccumulator& acc = capture->claim->accumulator();
    CallCore(env, [&] { model::CorrelationCapture::check_shape(acc, m->spec); });
    const size_t to = std::min(opts.to_layer, m->spec.layers);
    for (size_t l : model::CorrelationCapture::used_layers(acc)) {
      if (l < opts.from_layer || l >= to)
        ThrowCode(env, "INVALID_ARGUMENT", "the correlation accumulator uses layer " + std::to_string(l) +
                                               " but this forward pass runs layers " + std::to_string(opts.from_layer) +
                                               ".." + std::to_string(to) + " (exclusive)");
      if (std::find(opts.capture_layers.begin(), opts.capture_layers.end(), l) == opts.capture_layers.end())
        opts.capture_layers.push_back(l);
    }
    capture->into =
        CallCore(env, [&] { return std::make_unique<model::CorrelationCapture>(acc, m->spec, opts.capture_layers); });
  }
  opts.capture = capture.get();
  auto result = std::make_shared<model::ForwardResult>();
  return AsyncJob::Start(
      env, info[2],
      [m, in, owned, opts, capture, result](JobControl& ctl) { *result = model::forward(ctl, *m, in, opts); },
      [result, capture, opts](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        if (opts.output == model::Output::Hidden) o.Set("hidden", ExternalF32(env, std::move(result->hidden)));
        if (opts.output == model::Output::Logits) o.Set("logits", ExternalF32(env, std::move(result->logits)));
        if (opts.output == model::Output::Nll) {
          o.Set("nll", ExternalF32(env, std::move(result->nll)));
          o.Set("nllSum", result->nll_sum);
          o.Set("nllCount", double(result->nll_count));
        }
        auto put_list = [&](const char* key, std::vector<std::vector<float>>& list) {
          if (list.empty()) return;
          Napi::Array arr = Napi::Array::New(env, list.size());
          for (uint32_t i = 0; i < list.size(); ++i) arr.Set(i, ExternalF32(env, std::move(list[i])));
          o.Set(key, arr);
        };
        put_list("ff", capture->layers);
        put_list("ffInputs", result->ff_inputs);
        put_list("ffOutputs", result->ff_outputs);
        return o;
      });
}

// benchSgemmSeconds(M, N, K, transB, reps) → seconds per call of ffm::sgemm on the instance's pool, for
// benchmarks/forward.ts to relate the forward pass to the kernel it runs on (synchronous; benchmarks only).
Napi::Value BenchSgemmSeconds(const Napi::CallbackInfo& info) {
  const size_t M = info[0].ToNumber().Uint32Value(), N = info[1].ToNumber().Uint32Value(),
               K = info[2].ToNumber().Uint32Value();
  const bool trans_b = info[3].ToBoolean().Value();
  const uint32_t reps = std::max<uint32_t>(1, info[4].ToNumber().Uint32Value());
  std::vector<float> A(M * K, 0.5f), B(K * N, 0.25f), C(M * N);
  ThreadPool* pool = GetAddonData(info.Env()).pool.get();
  auto run = [&] { sgemm(pool, false, trans_b, M, N, K, 1.0f, A.data(), K, B.data(), trans_b ? K : N, 0.0f, C.data(), N); };
  run();  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  for (uint32_t r = 0; r < reps; ++r) run();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Napi::Number::New(info.Env(), s / reps);
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("benchSgemmSeconds", Napi::Function::New(env, BenchSgemmSeconds, "benchSgemmSeconds"));
  exports.Set("modelCreate", Napi::Function::New(env, ModelCreate, "modelCreate"));
  exports.Set("modelWithFF", Napi::Function::New(env, ModelWithFF, "modelWithFF"));
  exports.Set("modelFFWeights", Napi::Function::New(env, ModelFFWeights, "modelFFWeights"));
  exports.Set("modelFFWeightsAsync", Napi::Function::New(env, ModelFFWeightsAsync, "modelFFWeightsAsync"));
  exports.Set("modelSharesFF", Napi::Function::New(env, ModelSharesFF, "modelSharesFF"));
  exports.Set("modelDispose", Napi::Function::New(env, ModelDispose, "modelDispose"));
  exports.Set("modelForward", Napi::Function::New(env, ModelForward, "modelForward"));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
