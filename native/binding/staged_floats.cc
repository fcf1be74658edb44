// new StagedFloats(length)                      native floats for one model tensor, not allocated yet
//   .alloc(onProgress?) -> {promise, cancel}    allocates them in a job, zero, every page faulted in there
//   .write(offset, Float32Array)                copies the array to floats offset…, on the main thread
//   .dispose()                                  drops this object's reference (a model sharing it keeps it)
// Why: a model view (modelWithFF) copies its FFs on the main thread, since a worker must not read JS memory
// (async_job.h), and faulting in fresh pages for GBs of FFs (at 7B width) stalls the event loop for seconds.
// Staged, the pages are faulted on the pool and the main thread only copies, in slices the caller yields between.
#include "binding/staged_floats.h"

#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "binding/async_job.h"
#include "binding/reaper.h"
#include "binding/registry.h"
#include "core/error.h"

namespace ffm::binding {
namespace {

// Marks StagedFloats objects, so that SharedStaged never unwraps another native object as one.
constexpr napi_type_tag kStagedTag = {0x6a1f3c0e9b2d4e71ULL, 0xc85b0f4d2e7a9136ULL};

// The object's state; its alloc job's finish (main thread) sets buf, so a worker never touches it.
struct State {
  size_t length = 0;
  std::shared_ptr<std::vector<float>> buf;
  bool allocating = false;
  bool disposed = false;
  int64_t accounted = 0;  // bytes reported to V8 as external memory
};

class StagedFloats : public Napi::ObjectWrap<StagedFloats> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "StagedFloats",
                       {InstanceMethod<&StagedFloats::Alloc>("alloc"), InstanceMethod<&StagedFloats::Write>("write"),
                        InstanceMethod<&StagedFloats::Dispose>("dispose")});
  }

  explicit StagedFloats(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StagedFloats>(info) {
    st_ = std::make_shared<State>();
    reaper_ = ReaperOf(info.Env());
    st_->length = GetCount(info[0], "length");
    if (st_->length > SIZE_MAX / sizeof(float))
      ThrowCode(info.Env(), "OUT_OF_MEMORY", "staged floats of this length do not fit in memory");
    info.This().As<Napi::Object>().TypeTag(&kStagedTag);
  }

  ~StagedFloats() override { Release(Env()); }

  model::Buffer Share(Napi::Env env) const {
    if (st_->disposed) ThrowCode(env, "INVALID_STATE", "these staged floats were disposed");
    if (!st_->buf || st_->allocating) ThrowCode(env, "INVALID_STATE", "these staged floats are not allocated yet; await alloc()");
    return st_->buf;
  }

 private:
  void Release(Napi::Env env) {
    const std::vector<float>* v = st_->buf.get();
    reaper_->Drop(std::move(st_->buf), PagesOf(v));  // a model sharing it keeps its own reference
    st_->disposed = true;
    if (st_->accounted) Napi::MemoryManagement::AdjustExternalMemory(env, -st_->accounted);
    st_->accounted = 0;
  }

  Napi::Value Alloc(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (st_->disposed) ThrowCode(env, "INVALID_STATE", "these staged floats were disposed");
    if (st_->buf || st_->allocating) ThrowCode(env, "INVALID_STATE", "these staged floats are already allocated");
    st_->allocating = true;
    auto st = st_;
    auto made = std::make_shared<std::shared_ptr<std::vector<float>>>();
    const size_t n = st_->length;
    return AsyncJob::Start(
        env, info[0],
        [made, n](JobControl& ctl) {
          try {
            *made = std::make_shared<std::vector<float>>(n);  // value-initialised: every page written here
          } catch (const std::bad_alloc&) {
            throw Error("OUT_OF_MEMORY", "not enough memory for " + std::to_string(n) + " floats of a model tensor");
          }
          ctl.check();
        },
        [st, made](Napi::Env e) -> Napi::Value {
          st->allocating = false;
          // Reported to V8 while this object holds it: the collections the reports start then come
          // between candidates instead of with more garbage later (shorter event-loop stalls).
          if (!st->disposed) {
            st->buf = std::move(*made);
            st->accounted = int64_t(st->length * sizeof(float));
            Napi::MemoryManagement::AdjustExternalMemory(e, st->accounted);
          }
          return e.Undefined();
        });
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const size_t offset = GetCount(info[0], "offset");
    const F32View src = GetF32(info[1], "values");
    Share(env);  // allocated and not disposed
    // shared with a model from the moment SharedStaged handed it out: never written again
    if (st_->buf.use_count() > 1) ThrowCode(env, "BUSY", "these staged floats are held by a model; they can no longer be written");
    if (offset > st_->length || src.length > st_->length - offset)
      ThrowCode(env, "SHAPE_MISMATCH", std::to_string(src.length) + " floats at offset " + std::to_string(offset) +
                                           " do not fit in " + std::to_string(st_->length));
    if (src.length) std::memcpy(st_->buf->data() + offset, src.data, src.length * sizeof(float));
    return env.Undefined();
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Release(info.Env());
    return info.Env().Undefined();
  }

  std::shared_ptr<State> st_;
  std::shared_ptr<Reaper> reaper_;
};

void Init(Napi::Env env, Napi::Object exports) { exports.Set("StagedFloats", StagedFloats::Define(env)); }

}  // namespace

model::Buffer SharedStaged(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kStagedTag)) return nullptr;
  return StagedFloats::Unwrap(v.As<Napi::Object>())->Share(v.Env());
}

model::Buffer StagedOrLength(const Napi::Value& v, const char* key, size_t* length) {
  model::Buffer b = SharedStaged(v);
  *length = b ? b->size() : GetF32(v, key).length;
  return b;
}

FFMERGE_BINDING(Init);
}  // namespace ffm::binding
