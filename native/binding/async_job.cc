#include "binding/async_job.h"

#include "binding/addon_data.h"
#include "core/error.h"

namespace ffm::binding {

AsyncJob::AsyncJob(Napi::Env env, Work work, Finish finish)
    : Napi::AsyncProgressWorker<ProgressMsg>(env, "ffmerge"),
      deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)),
      finish_(std::move(finish)),
      cancel_(std::make_shared<std::atomic<bool>>(false)) {}

Napi::Object AsyncJob::Start(Napi::Env env, Napi::Value on_progress, Work work, Finish finish) {
  auto* job = new AsyncJob(env, std::move(work), std::move(finish));  // deleted by node-addon-api when settled
  if (on_progress.IsFunction()) job->on_progress_ = Napi::Persistent(on_progress.As<Napi::Function>());
  job->pool_ = GetAddonData(env).pool.get();
  job->jobs_ = GetAddonData(env).jobs;
  job->jobs_key_ = job->jobs_->add(job->cancel_);  // so that an exiting process can stop it (addon.cc)
  auto flag = job->cancel_;
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", job->deferred_.Promise());
  // The cancel function holds the flag, not the job: it stays safe to call after the job is gone.
  handle.Set("cancel", Napi::Function::New(
                           env, [flag](const Napi::CallbackInfo&) { flag->store(true); }, "cancel"));
  job->Queue();
  return handle;
}

AsyncJob::~AsyncJob() {
  if (jobs_) jobs_->remove(jobs_key_);
}

void AsyncJob::Execute(const ExecutionProgress& progress) {
  JobControl ctl(*pool_, [&progress](double done, double total) {
    ProgressMsg m{done, total};
    progress.Send(&m, 1);
  }, cancel_);
  try {
    ctl.check();
    work_(ctl);
  } catch (const Cancelled&) {
    error_code_ = "ABORTED";
    SetError("the operation was aborted");
  } catch (const Error& e) {
    error_code_ = e.code();
    SetError(e.what());
  } catch (const std::bad_alloc&) {
    error_code_ = "OUT_OF_MEMORY";
    SetError("not enough memory for this operation");
  } catch (const std::exception& e) {
    error_code_ = "NATIVE_ERROR";
    SetError(e.what());
  }
}

void AsyncJob::OnProgress(const ProgressMsg* data, size_t count) {
  if (on_progress_.IsEmpty() || count == 0) return;
  Napi::HandleScope scope(Env());
  const ProgressMsg& m = data[count - 1];
  on_progress_.Call({Napi::Number::New(Env(), m.done), Napi::Number::New(Env(), m.total)});
}

void AsyncJob::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  try {
    deferred_.Resolve(finish_ ? finish_(env) : env.Undefined());
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void AsyncJob::OnError(const Napi::Error& e) {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  Napi::Error err = Napi::Error::New(env, e.Message());
  err.Set("code", Napi::String::New(env, error_code_.empty() ? "NATIVE_ERROR" : error_code_));
  deferred_.Reject(err.Value());
}

F32View GetF32(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    ThrowCode(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  return {a.Data(), a.ElementLength()};
}

size_t GetCount(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) ThrowCode(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a number");
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!(x >= 0) || x != double(size_t(x)) || x > 9007199254740991.0)
    ThrowCode(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be a non-negative integer");
  return size_t(x);
}

int32_t* GetI32(const Napi::Value& v, const char* what, size_t* length) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    ThrowCode(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  if (length) *length = a.ElementLength();
  return a.Data();
}

void ThrowCode(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

}  // namespace ffm::binding
