// modelLoad(spec, plan, onProgress) → {promise, cancel}: a native Model read straight from safetensors files.
//
// plan = {files: string[] (absolute paths), slots: [{name, pieces: [{file, offset, length, dtype, rows?, cols?}]}]}
// (see core/model/load.h). The plan is parsed into plain C++ here, on the main thread; the job then opens
// the files, reads every tensor into native storage on the pool and builds the Model, touching nothing of JS.
// The promise resolves to a model handle (as modelCreate returns).
#include <napi.h>

#include <memory>
#include <string>

#include "binding/async_job.h"
#include "binding/model_handle.h"
#include "binding/registry.h"
#include "binding/spec_binding.h"
#include "core/model/load.h"
#include "core/model/stream.h"

namespace ffm::binding {
namespace {

uint64_t GetU64(const Napi::Object& o, const char* key, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) ThrowCode(o.Env(), "INVALID_ARGUMENT", std::string("load plan: missing ") + key);
    return 0;
  }
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0) || d > 9007199254740991.0 || d != double(uint64_t(d)))
    ThrowCode(o.Env(), "INVALID_ARGUMENT", std::string("load plan: ") + key + " must be a non-negative integer");
  return uint64_t(d);
}

model::LoadPlan ParsePlan(const Napi::Object& o) {
  Napi::Env env = o.Env();
  model::LoadPlan plan;
  if (!o.Get("files").IsArray() || !o.Get("slots").IsArray())
    ThrowCode(env, "INVALID_ARGUMENT", "load plan: {files: string[], slots: []}");
  Napi::Array files = o.Get("files").As<Napi::Array>();
  for (uint32_t i = 0; i < files.Length(); ++i) {
    if (!files.Get(i).IsString()) ThrowCode(env, "INVALID_ARGUMENT", "load plan: files must be strings");
    plan.files.push_back(files.Get(i).As<Napi::String>().Utf8Value());
  }
  Napi::Array slots = o.Get("slots").As<Napi::Array>();
  for (uint32_t i = 0; i < slots.Length(); ++i) {
    if (!slots.Get(i).IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "load plan: slots must be objects");
    Napi::Object so = slots.Get(i).As<Napi::Object>();
    if (!so.Get("name").IsString() || !so.Get("pieces").IsArray())
      ThrowCode(env, "INVALID_ARGUMENT", "load plan: a slot is {name, pieces}");
    model::LoadSlot slot;
    slot.name = so.Get("name").As<Napi::String>().Utf8Value();
    Napi::Array pieces = so.Get("pieces").As<Napi::Array>();
    for (uint32_t j = 0; j < pieces.Length(); ++j) {
      if (!pieces.Get(j).IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "load plan: pieces must be objects");
      Napi::Object po = pieces.Get(j).As<Napi::Object>();
      model::LoadPiece p;
      p.file = size_t(GetU64(po, "file", true));
      if (p.file >= plan.files.size()) ThrowCode(env, "INVALID_ARGUMENT", "load plan: file index out of range");
      p.offset = GetU64(po, "offset", true);
      p.length = GetU64(po, "length", true);
      p.rows = GetU64(po, "rows", false);
      p.cols = GetU64(po, "cols", false);
      const std::string dt = po.Get("dtype").IsString() ? po.Get("dtype").As<Napi::String>().Utf8Value() : "";
      if (!model::parse_stored_type(dt, &p.dtype))
        ThrowCode(env, "SAFETENSORS_UNKNOWN_DTYPE", "tensor \"" + slot.name + "\" has dtype \"" + dt + "\", which ffmerge cannot load as a weight");
      slot.pieces.push_back(p);
    }
    plan.slots.push_back(std::move(slot));
  }
  // map (default true): 16-bit matrices are mapped from the files rather than read (core/model/load.h)
  plan.map = !o.Has("map") || o.Get("map").IsUndefined() || o.Get("map").ToBoolean().Value();
  return plan;
}

Napi::Value ModelLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "modelLoad(spec, plan, onProgress)");
  const model::ModelSpec spec = ParseModelSpec(info[0].As<Napi::Object>());
  auto plan = std::make_shared<const model::LoadPlan>(ParsePlan(info[1].As<Napi::Object>()));
  const bool stream = info[1].As<Napi::Object>().Get("stream").ToBoolean().Value();
  auto result = std::make_shared<std::shared_ptr<const model::Model>>();
  return AsyncJob::Start(
      env, info[2],
      [spec, plan, stream, result](JobControl& ctl) {
        if (!stream) {
          auto tensors = model::load_tensors(ctl, *plan);
          *result = std::make_shared<const model::Model>(model::build_model(spec, tensors));
          return;
        }
        // Streamed: the top-level slots are read now, each layer's slots when a pass reaches the layer.
        model::LoadPlan top{plan->files, {}, plan->map};
        std::vector<model::LoadPlan> layers(spec.layers, model::LoadPlan{plan->files, {}, plan->map});
        for (const auto& slot : plan->slots) {
          if (slot.name.compare(0, 7, "layers.") != 0) {
            top.slots.push_back(slot);
            continue;
          }
          const size_t l = size_t(std::stoul(slot.name.substr(7)));
          if (l >= spec.layers)
            throw Error("INVALID_ARGUMENT", "load plan: slot \"" + slot.name + "\" is past the stack's layers");
          layers[l].slots.push_back(slot);
        }
        auto tensors = model::load_tensors(ctl, top);
        auto ls = std::make_shared<model::LayerStream>(spec, std::move(layers));
        *result = std::make_shared<const model::Model>(model::build_streamed_model(spec, tensors, std::move(ls)));
      },
      [result](Napi::Env env) -> Napi::Value { return WrapModel(env, std::move(*result)); });
}

// modelWeightDtypes(handle) → {slot: 'F32' | 'F16' | 'BF16'} for the top-level and layer-0 matrices: what is
// resident, for tests and `inspect` (cheap: no data is touched).
Napi::Value ModelWeightDtypes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  Napi::Object o = Napi::Object::New(env);
  auto put = [&](const char* name, const model::Tensor& t) {
    if (!t) return;
    o.Set(name, t.dtype == model::DType::BF16 ? "BF16" : t.dtype == model::DType::F16 ? "F16" : "F32");
  };
  put("tok_emb", m->w.tok_emb);
  put("lm_head_w", m->w.lm_head_w);
  put("final_norm_w", m->w.final_norm_w);
  if (!m->w.layers.empty() && m->w.layers[0].streamed >= 0) {
    o.Set("layers", "streamed");  // read from disk per pass; nothing resident to report
  } else if (!m->w.layers.empty()) {
    const auto& L = m->w.layers[0];
    put("layers.0.qkv_w", L.qkv_w);
    put("layers.0.o_w", L.o_w);
    put("layers.0.norm1_w", L.norm1_w);
    put("layers.0.ff.w_in", L.ff->w_in);
    put("layers.0.ff.w_out", L.ff->w_out);
  }
  return o;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("modelLoad", Napi::Function::New(env, ModelLoad, "modelLoad"));
  exports.Set("modelWeightDtypes", Napi::Function::New(env, ModelWeightDtypes, "modelWeightDtypes"));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
