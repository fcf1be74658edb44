#include "binding/async_job.h"

#include <mutex>
#include <utility>

#include "binding/addon_data.h"
#include "core/error.h"

namespace ffm::binding {

namespace {

// What the job's thread and the main thread share.
struct Shared {
  std::mutex mu;
  // Null once this thread may no longer call it: after its release, after a call answered napi_closing, or
  // once Node finalized it (the environment is going away). Only used under mu, so a finalizer on the main
  // thread and a call from the job's thread never cross.
  napi_threadsafe_function tsfn = nullptr;
  bool wants_progress = false;
  bool progress_queued = false;  // one progress message in flight at most: the latest values are read on arrival
  double done = 0, total = 0;
  double part_done = 0, part_total = 0;  // JobControl::part: a count within the step (0, 0: none)
};

// A message from the job's thread to the main thread.
struct Message {
  bool end = false;  // false: progress (the values are in Shared)
  std::string code;  // at the end: empty for success, else the error's code
  std::string message;
  // At the end: the work function, let go of on the main thread once the promise is settled. What its closure
  // holds (a NativeFF's or an accumulator's busy claim) is then held until the caller hears of the end, as it
  // was on libuv's pool: a set() right after starting a short job is BUSY however fast the job ran.
  AsyncJob::Work work;
};

// The main thread's side of a job: the promise, the JS callback, the finish function (which may hold JS
// references). The thread-safe function's context: deleted in its finalizer, on the main thread.
struct JsSide {
  std::shared_ptr<Shared> shared;
  Napi::Promise::Deferred deferred;
  Napi::FunctionReference on_progress;
  AsyncJob::Finish finish;
  bool settled = false;
};

// Hands a message to the main thread (taking it over). Under the lock: the finalizer clears tsfn under it.
void Post(Shared& s, Message* m) {
  if (!s.tsfn) {
    delete m;
    return;
  }
  const napi_status st = napi_call_threadsafe_function(s.tsfn, m, napi_tsfn_nonblocking);
  if (st == napi_ok) return;
  delete m;
  // closing: Node has counted this thread out already, so it must neither call nor release it again
  if (st == napi_closing) s.tsfn = nullptr;
}

void PostProgress(Shared& s, double done, double total, bool part = false) {
  std::lock_guard<std::mutex> lock(s.mu);
  (part ? s.part_done : s.done) = done;
  (part ? s.part_total : s.total) = total;
  if (!s.wants_progress || s.progress_queued || !s.tsfn) return;
  s.progress_queued = true;
  Post(s, new Message{});
  if (!s.tsfn) s.progress_queued = false;
}

void PostEnd(Shared& s, Message* end) {
  std::lock_guard<std::mutex> lock(s.mu);
  Post(s, end);
  if (s.tsfn) napi_release_threadsafe_function(s.tsfn, napi_tsfn_release);
  s.tsfn = nullptr;
}

// On the main thread. env is null when Node empties the queue of a thread-safe function it is finalizing.
void CallJs(napi_env env, napi_value, void* context, void* data) {
  std::unique_ptr<Message> m(static_cast<Message*>(data));
  auto* js = static_cast<JsSide*>(context);
  if (env == nullptr || !m || js->settled) return;
  Napi::Env e(env);
  try {
    Napi::HandleScope scope(e);
    if (!m->end) {
      double done, total, part_done, part_total;
      {
        std::lock_guard<std::mutex> lock(js->shared->mu);
        js->shared->progress_queued = false;
        done = js->shared->done;
        total = js->shared->total;
        part_done = js->shared->part_done;
        part_total = js->shared->part_total;
      }
      // (done, total), and with a part under way (a validation pass) its count too
      if (!js->on_progress.IsEmpty()) {
        if (part_total > 0)
          js->on_progress.Call({Napi::Number::New(e, done), Napi::Number::New(e, total), Napi::Number::New(e, part_done), Napi::Number::New(e, part_total)});
        else
          js->on_progress.Call({Napi::Number::New(e, done), Napi::Number::New(e, total)});
      }
      return;
    }
    js->settled = true;
    js->on_progress.Reset();
    const auto reject = [&](const std::string& code, const std::string& message) {
      Napi::Error err = Napi::Error::New(e, message);
      err.Set("code", Napi::String::New(e, code));
      js->deferred.Reject(err.Value());
    };
    if (m->code.empty()) {
      // building the result (WriteBack, new arrays) may fail too: the promise settles whatever happens
      try {
        js->deferred.Resolve(js->finish ? js->finish(e) : e.Undefined());
      } catch (const Napi::Error& err) {
        js->deferred.Reject(err.Value());
      } catch (const std::bad_alloc&) {
        reject("OUT_OF_MEMORY", "not enough memory for this operation's result");
      } catch (const std::exception& x) {
        reject("NATIVE_ERROR", x.what());
      }
    } else {
      reject(m->code, m->message);
    }
    js->finish = nullptr;  // what it held (result buffers, JS references) goes now
    m->work = nullptr;     // and what the work held, its claims released before any JS continuation runs
  } catch (const Napi::Error& err) {
    // a progress callback that threw: the host hears of it as of any callback's uncaught exception
    err.ThrowAsJavaScriptException();
  } catch (...) {
    // JS cannot run any more (the environment is being torn down): nobody waits for this job now
  }
}

void Finalize(napi_env, void* data, void*) {
  auto* js = static_cast<JsSide*>(data);
  {
    std::lock_guard<std::mutex> lock(js->shared->mu);
    js->shared->tsfn = nullptr;  // the job's thread, if it still runs, posts nothing more
  }
  delete js;
}

// The job's end as a message: success, or the error's code and sentence.
Message* RunWork(const AsyncJob::Work& work, JobControl& ctl) {
  auto* end = new Message{true, {}, {}, {}};
  try {
    ctl.check();
    work(ctl);
  } catch (const Cancelled&) {
    end->code = "ABORTED";
    end->message = "the operation was aborted";
  } catch (const Error& e) {
    end->code = e.code();
    end->message = e.what();
  } catch (const std::bad_alloc&) {
    end->code = "OUT_OF_MEMORY";
    end->message = "not enough memory for this operation";
  } catch (const std::exception& e) {
    end->code = "NATIVE_ERROR";
    end->message = e.what();
  }
  return end;
}

}  // namespace

Napi::Object AsyncJob::Start(Napi::Env env, Napi::Value on_progress, Work work, Finish finish) {
  AddonData& data = GetAddonData(env);
  auto shared = std::make_shared<Shared>();
  auto js = std::make_unique<JsSide>(JsSide{shared, Napi::Promise::Deferred::New(env), {}, std::move(finish)});
  if (on_progress.IsFunction()) {
    js->on_progress = Napi::Persistent(on_progress.As<Napi::Function>());
    shared->wants_progress = true;
  }
  Napi::Promise promise = js->deferred.Promise();
  napi_threadsafe_function tsfn = nullptr;
  napi_value name = Napi::String::New(env, "ffmerge");
  // referenced (the default): like the async work it replaces, a running job keeps the event loop alive
  if (napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, js.get(), Finalize, js.get(), CallJs, &tsfn) != napi_ok) {
    ThrowCode(env, "NATIVE_ERROR", "could not start a native job (napi_create_threadsafe_function failed)");
  }
  js.release();  // owned by the thread-safe function now (Finalize)
  shared->tsfn = tsfn;

  auto cancel = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<JobRegistry> jobs = data.jobs;
  const uint64_t key = jobs->add(cancel);  // so that an exiting process or a dying environment can stop it
  ThreadPool* pool = data.pool.get();
  JobRunner* runner = data.runner.get();
  const uint64_t ticket = runner->post([shared, cancel, jobs, key, pool, work = std::move(work)]() mutable {
    Message* end;
    {
      JobControl ctl(*pool, [shared](double done, double total) { PostProgress(*shared, done, total); }, cancel);
      ctl.set_part_sink([shared](double done, double total) { PostProgress(*shared, done, total, true); });
      end = RunWork(work, ctl);
    }
    end->work = std::move(work);  // goes with the end (Message::work says why)
    jobs->remove(key);
    PostEnd(*shared, end);
  });

  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", promise);
  // The cancel function holds the flag and the ticket, not the job: it stays safe to call after the job is gone.
  // A job still waiting for one of the runner's threads is taken back and run here, where its first
  // cancellation check ends it before any work: its promise rejects now, not once a thread frees. The runner
  // outlives every JS call into this environment (AddonData, destroyed at its teardown).
  handle.Set("cancel", Napi::Function::New(
                           env,
                           [cancel, runner, ticket](const Napi::CallbackInfo&) {
                             cancel->store(true);
                             if (std::function<void()> queued = runner->withdraw(ticket)) queued();
                           },
                           "cancel"));
  return handle;
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
