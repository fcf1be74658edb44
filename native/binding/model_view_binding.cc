// Model views that change the stack's depth, for JS: modelWithoutLayers(handle, layers[]) → handle (the
// drop-layers baseline), modelLayerParams(handle, layer) → parameters one layer stores (what dropping it saves).
// Both are cheap (pointer copies, a sum of sizes), so they run on the main thread.
#include <napi.h>

#include <vector>

#include "binding/async_job.h"
#include "binding/model_handle.h"
#include "binding/registry.h"
#include "core/error.h"
#include "core/model/drop_layers.h"

namespace ffm::binding {
namespace {

Napi::Value ModelWithoutLayers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto base = UnwrapModel(info[0]);
  if (!info[1].IsArray()) ThrowCode(env, "INVALID_ARGUMENT", "modelWithoutLayers(handle, layers: number[])");
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<size_t> drop;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d != double(size_t(d))) ThrowCode(env, "INVALID_ARGUMENT", "layers must be non-negative integers");
    drop.push_back(size_t(d));
  }
  return CallCore(env, [&] { return WrapModel(env, model::without_layers(base, drop)); });
}

Napi::Value ModelLayerParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  const double d = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0) || d != double(size_t(d))) ThrowCode(env, "INVALID_ARGUMENT", "layer must be a non-negative integer");
  return CallCore(env, [&] { return Napi::Number::New(env, double(model::layer_params(*m, size_t(d)))); });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("modelWithoutLayers", Napi::Function::New(env, ModelWithoutLayers, "modelWithoutLayers"));
  exports.Set("modelLayerParams", Napi::Function::New(env, ModelLayerParams, "modelLayerParams"));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
