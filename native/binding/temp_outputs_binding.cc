// holdTempOutput(path) -> id and releaseTempOutput(id): lib/native/temp-outputs.ts; temp_outputs.h says why.
#include "binding/temp_outputs.h"

#include <napi.h>

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

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

namespace {

// POSIX calls, not std::filesystem: with GCC 8 (RHEL 8's compiler) std::filesystem lives in libstdc++fs, which
// the addon does not link.
bool exists_nofollow(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  std::remove(path);  // unlink for a file or a link (never followed), rmdir for a folder emptied before it
  return 0;           // go on whatever fails: what stays is swept by the next run to that output
}

// A file, a link, or a folder with everything inside it, children first; links are removed, never followed.
void remove_all(const std::string& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode))
    ::nftw(p.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  else
    ::unlink(p.c_str());
}

}  // namespace

void TempOutputs::remove_held() noexcept {
  std::map<uint32_t, Held> held;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    held.swap(held_);
  }
  // the earlier outputs first: one whose place is empty goes back before anything else is removed
  for (const auto& [id, h] : held) {
    if (h.restore_to.empty() || !exists_nofollow(h.path)) continue;
    if (!exists_nofollow(h.restore_to)) std::rename(h.path.c_str(), h.restore_to.c_str());
  }
  for (const auto& [id, h] : held) remove_all(h.path);  // a restored path is gone already
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
