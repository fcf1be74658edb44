// Fine-tuning for JS (native/core/train): one native job per call, on the addon's pool.
//
// modelFinetune(handle, args, onProgress) → {promise, cancel, latest()}
//   args: {tokens: Int32Array, validation?: Int32Array, validationSeq?, steps, batch, seq, micro?, lr, warmup?,
//          weightDecay?, clip?, seed?, evalEvery?, schedule?: 'constant'|'cosine', trainable?: 'all'|'ff'}
//   or, for an image classifier, {images: Float32Array [n·C·H·W] preprocessed, labels: Int32Array [n],
//          validationImages?, validationLabels?, …the same optimizer options (seq unused)}
//   promise → {model: handle, log: {step, loss, lr, gradNorm, seconds, tokensPerSecond, imagesPerSecond,
//              valLoss, valAccuracy}: number[] each, valBefore, valAfter, accuracyBefore, accuracyAfter}.
//   latest() → the last finished step's log entry or undefined: the worker writes it under a mutex and the
//   main thread reads it from the progress callback (no Node-API in the worker).
// modelLossAndGrad(handle, {ids, targets, batch, seq} | {pixels, labels, batch}, onProgress) → {promise,
//   cancel}, promise → {loss (mean over scored targets / images), grads: {param name: Float32Array},
//   slots: {slot: param name}} (tests, tools).
// modelSlotTensors(handle, onProgress) → {promise, cancel}, promise → {slot: Float32Array}: every present slot's
//   weights, as float32 (tied slots: one array).
#include <napi.h>

#include <cmath>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "binding/addon_data.h"
#include "binding/async_job.h"
#include "binding/ff_binding.h"
#include "binding/model_handle.h"
#include "binding/registry.h"
#include "core/error.h"
#include "core/model/stream.h"
#include "core/train/image_grad.h"
#include "core/train/image_trainer.h"
#include "core/train/model_grad.h"
#include "core/train/params.h"
#include "core/train/trainer.h"

namespace ffm::binding {
namespace {

double GetNum(const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) ThrowCode(o.Env(), "INVALID_ARGUMENT", std::string("finetune: ") + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

size_t GetCount(const Napi::Object& o, const char* key, double dflt) {
  const double d = GetNum(o, key, dflt);
  if (!(d >= 0) || d != std::floor(d) || d > 1e15)
    ThrowCode(o.Env(), "INVALID_ARGUMENT", std::string("finetune: ") + key + " must be a non-negative integer");
  return size_t(d);
}

using train::StepLog;

struct SharedLog {
  std::mutex mu;
  std::optional<StepLog> latest;
};

// StepLog's fields after step, as JS names them: the keys of latest()'s entry and the result's log columns.
const std::pair<const char*, double StepLog::*> kLogFields[] = {
    {"loss", &StepLog::loss}, {"lr", &StepLog::lr}, {"gradNorm", &StepLog::grad_norm}, {"seconds", &StepLog::seconds},
    {"tokensPerSecond", &StepLog::tokens_per_s}, {"imagesPerSecond", &StepLog::images_per_s},
    {"valLoss", &StepLog::val_loss}, {"valAccuracy", &StepLog::val_accuracy}};  // the last two NaN where not evaluated

Napi::Object LogEntry(Napi::Env env, const StepLog& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("step", double(s.step));
  for (const auto& [key, field] : kLogFields)
    if (std::isfinite(s.*field) || (field != &StepLog::val_loss && field != &StepLog::val_accuracy)) o.Set(key, s.*field);
  return o;
}

Napi::Value Finetune(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  if (!info[1].IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "modelFinetune(handle, args, onProgress)");
  Napi::Object a = info[1].As<Napi::Object>();
  train::TrainOptions o;
  o.steps = GetCount(a, "steps", 100);
  o.batch = GetCount(a, "batch", 8);
  o.seq = GetCount(a, "seq", 128);
  o.micro = GetCount(a, "micro", 0);
  o.seed = uint64_t(GetCount(a, "seed", 0));
  o.eval_every = GetCount(a, "evalEvery", 0);
  o.adamw.lr = float(GetNum(a, "lr", 2e-4));
  o.adamw.warmup = GetCount(a, "warmup", 0);
  o.adamw.weight_decay = float(GetNum(a, "weightDecay", 0));
  o.adamw.clip = float(GetNum(a, "clip", 1.0));
  const std::string schedule = a.Get("schedule").IsString() ? a.Get("schedule").As<Napi::String>().Utf8Value() : "constant";
  if (schedule == "cosine") o.adamw.schedule = train::Schedule::Cosine;
  else if (schedule != "constant") ThrowCode(env, "INVALID_ARGUMENT", "finetune: schedule must be 'constant' or 'cosine'");
  const std::string which = a.Get("trainable").IsString() ? a.Get("trainable").As<Napi::String>().Utf8Value() : "all";
  if (which == "ff") o.trainable = train::Trainable::FeedForward;
  else if (which != "all") ThrowCode(env, "INVALID_ARGUMENT", "finetune: trainable must be 'all' or 'ff'");
  CallCore(env, [&] { train::check_trainable(m->spec); });
  auto log = std::make_shared<SharedLog>();
  auto on_step = [log](const StepLog& s) {
    std::lock_guard<std::mutex> lock(log->mu);
    log->latest = s;
  };
  auto result = std::make_shared<train::TrainResult>();
  const bool images = !a.Get("images").IsUndefined();
  std::function<void(JobControl&)> work;
  // Copied for the worker (async_job.h says why).
  if (images) {
    if (m->spec.input != model::InputKind::Patches)
      ThrowCode(env, "INVALID_ARGUMENT", "finetune: this " + m->spec.family + " model takes token ids, not images");
    const size_t px = m->spec.channels * m->spec.image_h * m->spec.image_w;
    Owned<float> pixels = CopyTyped<float>(a.Get("images"), "images");
    Owned<int32_t> labels = CopyTyped<int32_t>(a.Get("labels"), "labels");
    Owned<float> vpixels = std::make_shared<std::vector<float>>();
    Owned<int32_t> vlabels = std::make_shared<std::vector<int32_t>>();
    if (!a.Get("validationImages").IsUndefined()) {
      vpixels = CopyTyped<float>(a.Get("validationImages"), "validationImages");
      vlabels = CopyTyped<int32_t>(a.Get("validationLabels"), "validationLabels");
    }
    if (pixels->size() != labels->size() * px || vpixels->size() != vlabels->size() * px)
      ThrowCode(env, "SHAPE_MISMATCH", "finetune: images must hold " + std::to_string(px) +
                                           " pixel values (channels·height·width) per label");
    work = [m, pixels, labels, vpixels, vlabels, o, on_step, result](JobControl& ctl) {
      const train::ImageSet tr{pixels->data(), labels->data(), labels->size()};
      const train::ImageSet va{vpixels->data(), vlabels->data(), vlabels->size()};
      *result = train::finetune_images(ctl, *m, tr, va, o, on_step);
    };
  } else {
    Owned<int32_t> tokens = CopyTyped<int32_t>(a.Get("tokens"), "tokens");
    Owned<int32_t> validation = std::make_shared<std::vector<int32_t>>();
    const size_t val_seq = GetCount(a, "validationSeq", 0);
    if (!a.Get("validation").IsUndefined()) {
      validation = CopyTyped<int32_t>(a.Get("validation"), "validation");
      if (val_seq < 2 || validation->size() % val_seq != 0)
        ThrowCode(env, "INVALID_ARGUMENT", "finetune: validation must hold whole blocks of validationSeq (≥ 2) tokens");
    }
    work = [m, tokens, validation, val_seq, o, on_step, result](JobControl& ctl) {
      *result = train::finetune(ctl, *m, *tokens, *validation, val_seq, o, on_step);
    };
  }
  Napi::Object handle = AsyncJob::Start(
      env, info[2], work,
      [result](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("model", WrapModel(env, result->model));
        Napi::Object lg = Napi::Object::New(env);
        const size_t n = result->log.size();
        auto col = [&](const char* key, auto field) {
          auto arr = Napi::Float64Array::New(env, n);
          for (size_t i = 0; i < n; ++i) arr[i] = double(result->log[i].*field);
          lg.Set(key, arr);
        };
        col("step", &StepLog::step);
        for (const auto& [key, field] : kLogFields) col(key, field);
        r.Set("log", lg);
        if (std::isfinite(result->val_before)) r.Set("valBefore", result->val_before);
        if (std::isfinite(result->val_after)) r.Set("valAfter", result->val_after);
        if (std::isfinite(result->acc_before)) r.Set("accuracyBefore", result->acc_before);
        if (std::isfinite(result->acc_after)) r.Set("accuracyAfter", result->acc_after);
        return r;
      });
  handle.Set("latest", Napi::Function::New(
                           env,
                           [log](const Napi::CallbackInfo& ci) -> Napi::Value {
                             std::lock_guard<std::mutex> lock(log->mu);
                             if (!log->latest) return ci.Env().Undefined();
                             return LogEntry(ci.Env(), *log->latest);
                           },
                           "latest"));
  return handle;
}

Napi::Value LossAndGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  if (!info[1].IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "modelLossAndGrad(handle, args, onProgress)");
  Napi::Object a = info[1].As<Napi::Object>();
  CallCore(env, [&] { train::check_trainable(m->spec); });
  struct Out {
    train::ParamSet ps;
    double loss = 0;
  };
  auto out = std::make_shared<Out>();
  std::function<void(JobControl&)> work;
  const size_t B = GetCount(a, "batch", 0);
  if (m->spec.input == model::InputKind::Patches) {
    const size_t px = m->spec.channels * m->spec.image_h * m->spec.image_w;
    Owned<float> pixels = CopyTyped<float>(a.Get("pixels"), "pixels");
    Owned<int32_t> labels = CopyTyped<int32_t>(a.Get("labels"), "labels");
    if (B == 0 || pixels->size() != B * px || labels->size() != B)
      ThrowCode(env, "INVALID_ARGUMENT", "modelLossAndGrad: pixels must hold batch images and labels batch entries");
    work = [m, pixels, labels, B, out](JobControl& ctl) {
      out->ps = train::params_from_model(model::resident_copy(ctl, *m));
      const CancelScope cancel_scope(ctl);  // on this job's own copy: an abort may stop a product midway
      train::Activations act;
      const train::ImageBatch ib{pixels->data(), labels->data(), B};
      out->loss = train::image_loss_and_grad(&ctl.pool(), m->spec, out->ps, ib, float(1.0 / double(B)), true, act) /
                  double(B);
    };
  } else {
    const size_t T = GetCount(a, "seq", 0);
    Owned<int32_t> ids = CopyTyped<int32_t>(a.Get("ids"), "ids");
    Owned<int32_t> targets = CopyTyped<int32_t>(a.Get("targets"), "targets");
    if (B == 0 || T == 0 || ids->size() != B * T || targets->size() != B * T)
      ThrowCode(env, "INVALID_ARGUMENT", "modelLossAndGrad: ids and targets must have batch·seq entries");
    work = [m, ids, targets, B, T, out](JobControl& ctl) {
      out->ps = train::params_from_model(model::resident_copy(ctl, *m));
      const CancelScope cancel_scope(ctl);  // on this job's own copy: an abort may stop a product midway
      train::TokenBatch tb{ids->data(), targets->data(), B, T};
      const size_t n = train::scored_targets(tb);
      if (n == 0) throw Error("INVALID_ARGUMENT", "modelLossAndGrad: no target is scored (all −1)");
      train::Activations act;
      out->loss = train::loss_and_grad(&ctl.pool(), m->spec, out->ps, tb, float(1.0 / double(n)), true, act) / double(n);
    };
  }
  return AsyncJob::Start(
      env, info[2], work,
      [out](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("loss", out->loss);
        Napi::Object grads = Napi::Object::New(env);
        for (const auto& p : out->ps.params) {
          auto arr = Napi::Float32Array::New(env, p.g.size());
          std::copy(p.g.begin(), p.g.end(), arr.Data());
          grads.Set(p.name, arr);
        }
        Napi::Object slots = Napi::Object::New(env);
        for (const auto& [name, i] : out->ps.slots()) slots.Set(name, out->ps.params[size_t(i)].name);
        r.Set("grads", grads);
        r.Set("slots", slots);
        return r;
      });
}

// The copy runs as a job: a whole model's weights (hundreds of MB for a GPT-2-small) widened and copied on
// the main thread would hold the host's event loop that long. Each parameter's vector becomes its array
// without another copy; slots that share a parameter (a merged window's FF, a tied head) share the array.
Napi::Value SlotTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  auto ps = std::make_shared<train::ParamSet>();
  return AsyncJob::Start(
      env, info[1],
      [m, ps](JobControl& ctl) {
        // Frozen params need no gradient buffer: only the weights are read here.
        *ps = train::params_from_model(model::resident_copy(ctl, *m), train::Trainable::FeedForward, &ctl, /*progress=*/true);
      },
      [ps](Napi::Env e) -> Napi::Value {
        Napi::Object r = Napi::Object::New(e);
        std::vector<Napi::Value> arrays(ps->params.size());
        for (const auto& [name, i] : ps->slots()) {
          Napi::Value& a = arrays[size_t(i)];
          if (a.IsEmpty()) a = ExternalF32(e, std::move(ps->params[size_t(i)].w));
          r.Set(name, a);
        }
        return r;
      });
}

// The trainer's own refusal (train::check_trainable), asked before a caller reads (and tokenizes) training data.
Napi::Value CheckTrainable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  CallCore(env, [&] { train::check_trainable(m->spec); });
  return env.Undefined();
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("modelCheckTrainable", Napi::Function::New(env, CheckTrainable, "modelCheckTrainable"));
  exports.Set("modelFinetune", Napi::Function::New(env, Finetune, "modelFinetune"));
  exports.Set("modelLossAndGrad", Napi::Function::New(env, LossAndGrad, "modelLossAndGrad"));
  exports.Set("modelSlotTensors", Napi::Function::New(env, SlotTensors, "modelSlotTensors"));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
