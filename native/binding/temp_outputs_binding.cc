// holdTempOutput(path) -> id and releaseTempOutput(id): lib/native/temp-outputs.ts; temp_outputs.h says why.
#include "binding/temp_outputs.h"

#include <napi.h>

#include <filesystem>
#include <system_error>

#include "binding/addon_data.h"
#include "binding/async_job.h"
#include "binding/registry.h"

namespace ffm::binding {

uint32_t TempOutputs::hold(std::string path, std::string restore_to) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint32_t id = next_++;
  held_.emplace(id, Held{std::move(path), std::move(restore_to)});
  return id;
}

void TempOutputs::release(uint32_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  held_.erase(id);
}

void TempOutputs::remove_held() noexcept {
  std::map<uint32_t, Held> held;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    held.swap(held_);
  }
  namespace fs = std::filesystem;
  // the earlier outputs first: one whose place is empty goes back before anything else is removed
  for (const auto& [id, h] : held) {
    std::error_code ec;
    if (h.restore_to.empty() || !fs::exists(fs::symlink_status(h.path, ec))) continue;
    if (!fs::exists(fs::symlink_status(h.restore_to, ec))) fs::rename(h.path, h.restore_to, ec);
  }
  for (const auto& [id, h] : held) {
    std::error_code ec;
    fs::remove_all(fs::path(h.path), ec);  // symlinks inside are unlinked, not followed; a restored path is gone
  }
}

namespace {

Napi::Value Hold(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || info[0].As<Napi::String>().Utf8Value().empty())
    ThrowCode(env, "INVALID_ARGUMENT", "holdTempOutput expects a path");
  if (!info[1].IsUndefined() && !info[1].IsString()) ThrowCode(env, "INVALID_ARGUMENT", "holdTempOutput: restoreTo must be a path");
  const std::string restore_to = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : std::string();
  return Napi::Number::New(env, GetAddonData(env).temps->hold(info[0].As<Napi::String>().Utf8Value(), restore_to));
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
