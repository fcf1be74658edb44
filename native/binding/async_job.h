// Runs a plain C++ work function off the main thread and hands JS back {promise, cancel}.
//
// The work function sees only a JobControl (pool, cancel flag, progress); it must not touch Napi. Inputs
// that live in JS memory (typed arrays) are kept alive by Keep() until the job settles, so the worker may
// read them without copying. Results are built on the main thread by the finish function.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/job.h"

namespace ffm::binding {

struct ProgressMsg {
  double done;
  double total;
};

class AsyncJob : public Napi::AsyncProgressWorker<ProgressMsg> {
 public:
  using Work = std::function<void(JobControl&)>;
  using Finish = std::function<Napi::Value(Napi::Env)>;

  // on_progress: a JS function (done, total) or undefined. keep: JS values to hold until settled.
  // Returns { promise, cancel }; cancel() asks the work to stop, the promise then rejects with code ABORTED.
  static Napi::Object Start(Napi::Env env, Napi::Value on_progress, std::vector<Napi::Value> keep, Work work,
                            Finish finish);

 protected:
  void Execute(const ExecutionProgress& progress) override;
  void OnProgress(const ProgressMsg* data, size_t count) override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  AsyncJob(Napi::Env env, Work work, Finish finish);
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference on_progress_;
  std::vector<Napi::Reference<Napi::Value>> keep_;
  Work work_;
  Finish finish_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::string error_code_;
  ThreadPool* pool_ = nullptr;  // the instance's pool, captured on the main thread
};

// Helpers shared by binding files.
// A Float32Array argument as pointer + length (throws a TypeError naming `what` otherwise).
struct F32View {
  float* data;
  size_t length;
};
F32View GetF32(const Napi::Value& v, const char* what);
int32_t* GetI32(const Napi::Value& v, const char* what, size_t* length);
// Throws a JS Error with .code = code.
[[noreturn]] void ThrowCode(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace ffm::binding
