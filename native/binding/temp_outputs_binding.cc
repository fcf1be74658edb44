// holdTempOutput(path) -> id and releaseTempOutput(id): lib/native/temp-outputs.ts; temp_outputs.h says why.
#include "binding/temp_outputs.h"

#include <napi.h>

#include <filesystem>
#include <system_error>

#include "binding/addon_data.h"
#include "binding/async_job.h"
#include "binding/registry.h"

namespace ffm::binding {

uint32_t TempOutputs::hold(std::string path) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint32_t id = next_++;
  held_.emplace(id, std::move(path));
  return id;
}

void TempOutputs::release(uint32_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  held_.erase(id);
}

void TempOutputs::remove_held() noexcept {
  std::map<uint32_t, std::string> paths;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    paths.swap(held_);
  }
  for (const auto& [id, p] : paths) {
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(p), ec);  // symlinks inside are unlinked, not followed
  }
}

namespace {

Napi::Value Hold(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || info[0].As<Napi::String>().Utf8Value().empty())
    ThrowCode(env, "INVALID_ARGUMENT", "holdTempOutput expects a path");
  return Napi::Number::New(env, GetAddonData(env).temps->hold(info[0].As<Napi::String>().Utf8Value()));
}

Napi::Value Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowCode(env, "INVALID_ARGUMENT", "releaseTempOutput expects the id holdTempOutput returned");
  GetAddonData(env).temps->release(info[0].As<Napi::Number>().Uint32Value());
  return env.Undefined();
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("holdTempOutput", Napi::Function::New(env, Hold, "holdTempOutput"));
  exports.Set("releaseTempOutput", Napi::Function::New(env, Release, "releaseTempOutput"));
}

}  // namespace

FFMERGE_BINDING(Init);
}  // namespace ffm::binding
