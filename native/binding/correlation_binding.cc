// JS class CorrelationAccumulator over ffm::CorrelationAccumulator (native/core/correlation.h).
//
//   new CorrelationAccumulator(dims: number[], pairs: Int32Array /* i0, j0, i1, j1, ... */)
//       (an empty pairs array: no pairs yet, open them with addPair; always the CPU backend)
//   .add(layers: (Float32Array | StagedFloats | null)[], rows, onProgress?)  -> { promise<void>, cancel }
//       a StagedFloats (staged_floats.h) is read in place: its copy was made a slice at a time beforehand
//   .finalize(pairIndex, onProgress?, release?)                -> { promise<Float32Array>, cancel }
//   .alignment(pairIndex, onProgress?, release?)               -> { promise<Int32Array>, cancel }
//       for a pair of equal widths, the permutation of layer j's units that maximises the total correlation
//       with layer i's (perm[a] = the unit of j matched to unit a of i), the correlation never leaving the
//       job: at d_ff 11008 the matrix is 484 MB that JS would otherwise hold and copy back for the assignment.
//       With release the fp64 sums are freed before the assignment runs.
//   .explained(pairIndex, onProgress?, release?)               -> { promise<Float64Array>, cancel }
//       per unit of the pair's first layer, Σ_b corr² · var(b) over the second's units (core/correlation.h)
//   .addFF(X, n, ff, activation, Y, onProgress?)                -> { promise<void>, cancel }
//       for an accumulator of two layers [units, m]: layer 0 = the hidden units of ff (binding/ff_binding.h,
//       a JS FF or a NativeFF) on X [n, d], computed in the job in row blocks; layer 1 = Y [n, m]. The
//       hidden units never pass through JS, and a NativeFF's weights are not copied.
//   .addPair(i, j) -> index   .release(pairIndex)   .pairCount(pairIndex) -> number
//   .count() -> number   .backend() -> 'cpu' | 'cuda'   .setBlockRows(n)
//
// finalize hands its result to JS without a copy (the ArrayBuffer owns the native vector): at d_ff 14336 a
// copy would be another 0.8 GB at the peak. With release, the pair's fp64 sums are freed in the same job.
//
// One job at a time per accumulator: a second add/finalize while one runs throws code BUSY (the core object
// is not safe for concurrent use, and interleaving batches would be a silent bug anyway). The state is held
// by a shared_ptr captured in the job, so a JS object collected mid-job cannot free what the worker uses;
// the layer arrays are copied for the worker (async_job.h says why). Other binding files
// claim an accumulator for their own jobs through correlation_handle.h, under the same busy flag.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "binding/async_job.h"
#include "binding/correlation_handle.h"
#include "binding/ff_binding.h"
#include "binding/reaper.h"
#include "binding/registry.h"
#include "binding/staged_floats.h"
#include "core/assignment.h"
#include "core/correlation.h"
#include "core/error.h"
#include "core/finite.h"

namespace ffm::binding {
namespace {

struct State {
  std::unique_ptr<CorrelationAccumulator> acc;
  std::atomic<bool> busy{false};
};

// Clears the busy flag when the last copy of the job's closures is destroyed: after the job settled, or
// when it never started. AsyncJob deletes itself right after resolving, before any JS continuation runs.
struct BusyGuard : CorrelationClaim {
  explicit BusyGuard(std::shared_ptr<State> s) : state(std::move(s)) {}
  BusyGuard(const BusyGuard&) = delete;  // a copy's destructor would clear the flag early
  BusyGuard& operator=(const BusyGuard&) = delete;
  ~BusyGuard() override { state->busy.store(false); }
  CorrelationAccumulator& accumulator() const override { return *state->acc; }
  std::shared_ptr<State> state;
};

// Marks objects made by this class, so ClaimCorrelationAccumulator never unwraps some other native object
// as one (napi_unwrap alone would hand back whatever pointer another class wrapped). A constant: no state.
constexpr napi_type_tag kAccumulatorTag = {0x6ff3e2c1a95b4d07ULL, 0x8c1d52e0b7a94f36ULL};

class JsCorrelationAccumulator : public Napi::ObjectWrap<JsCorrelationAccumulator> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CorrelationAccumulator",
                       {InstanceMethod<&JsCorrelationAccumulator::Add>("add"),
                        InstanceMethod<&JsCorrelationAccumulator::Finalize>("finalize"),
                        InstanceMethod<&JsCorrelationAccumulator::Explained>("explained"),
                        InstanceMethod<&JsCorrelationAccumulator::Alignment>("alignment"),
                        InstanceMethod<&JsCorrelationAccumulator::AddFF>("addFF"),
                        InstanceMethod<&JsCorrelationAccumulator::Count>("count"),
                        InstanceMethod<&JsCorrelationAccumulator::AddPair>("addPair"),
                        InstanceMethod<&JsCorrelationAccumulator::Release>("release"),
                        InstanceMethod<&JsCorrelationAccumulator::PairCount>("pairCount"),
                        InstanceMethod<&JsCorrelationAccumulator::Backend>("backend"),
                        InstanceMethod<&JsCorrelationAccumulator::SetBlockRows>("setBlockRows")});
  }

  // the sums (d_ff² doubles per pair: 970 MB at Llama-2-7B width) are freed off the main thread
  ~JsCorrelationAccumulator() override { reaper_->Drop(std::move(state_)); }

  explicit JsCorrelationAccumulator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsCorrelationAccumulator>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) ThrowCode(env, "INVALID_ARGUMENT", "dims must be an array of layer widths");
    auto dims_js = info[0].As<Napi::Array>();
    std::vector<size_t> dims(dims_js.Length());
    for (uint32_t l = 0; l < dims_js.Length(); ++l) dims[l] = GetCount(dims_js.Get(l), "each layer width");
    size_t flat_len = 0;
    int32_t* flat = GetI32(info[1], "pairs", &flat_len);
    if (flat_len % 2 != 0) ThrowCode(env, "INVALID_ARGUMENT", "pairs must hold (i, j) index pairs");
    std::vector<std::pair<int, int>> pairs;
    for (size_t k = 0; k < flat_len; k += 2) pairs.emplace_back(flat[k], flat[k + 1]);
    reaper_ = ReaperOf(env);
    state_ = std::make_shared<State>();
    try {
      state_->acc = CallCore(env, [&] {
        return pairs.empty() ? std::make_unique<CorrelationAccumulator>(std::move(dims))
                             : std::make_unique<CorrelationAccumulator>(std::move(dims), std::move(pairs));
      });
    } catch (const std::bad_alloc&) {
      ThrowCode(env, "OUT_OF_MEMORY", "not enough memory for the correlation accumulators of these layer pairs");
    }
    info.This().As<Napi::Object>().TypeTag(&kAccumulatorTag);  // only once the native state exists
  }

  // Public for ClaimCorrelationAccumulator (a forward pass accumulating into this object).
  std::shared_ptr<BusyGuard> Claim(Napi::Env env) {
    bool expected = false;
    if (!state_->busy.compare_exchange_strong(expected, true))
      ThrowCode(env, "BUSY",
                "this correlation accumulator is already running a job (an add, a finalize, or a forward pass "
                "accumulating into it); await it before starting another");
    return std::make_shared<BusyGuard>(state_);
  }

 private:
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    // Claimed first: the checks below read which pairs are open, which a running job may change.
    auto guard = Claim(env);
    const CorrelationAccumulator& acc = *state_->acc;
    if (!info[0].IsArray()) ThrowCode(env, "INVALID_ARGUMENT", "layers must be an array of Float32Array");
    auto arr = info[0].As<Napi::Array>();
    const size_t rows = GetCount(info[1], "rows");
    if (arr.Length() != acc.dims().size())
      ThrowCode(env, "SHAPE_MISMATCH", "expected activations for " + std::to_string(acc.dims().size()) +
                                           " layers, got " + std::to_string(arr.Length()));
    std::vector<const float*> layers(arr.Length(), nullptr);
    std::vector<Owned<float>> owned;  // the copies `layers` points into, held by the job's closure
    std::vector<model::Buffer> staged;  // staged arrays (StagedFloats), shared without a copy
    for (uint32_t l = 0; l < arr.Length(); ++l) {
      Napi::Value v = arr.Get(l);
      if (!acc.used(l) && (v.IsNull() || v.IsUndefined())) continue;
      size_t length = 0;
      model::Buffer b = StagedOrLength(v, "each used layer's activations", &length);
      // The core reads rows × dims[l] floats: never let a short array turn into an out-of-bounds read.
      if (length != rows * acc.dims()[l])
        ThrowCode(env, "SHAPE_MISMATCH", "layer " + std::to_string(l) + " holds " + std::to_string(length) +
                                             " values, expected rows × width = " + std::to_string(rows) + " × " +
                                             std::to_string(acc.dims()[l]));
      if (b) {
        layers[l] = b->data();
        staged.push_back(std::move(b));
      } else {
        owned.push_back(CopyTyped<float>(v, "each used layer's activations"));
        layers[l] = owned.back()->data();
      }
    }
    return AsyncJob::Start(
        env, info[2],
        [guard, layers, owned, staged, rows](JobControl& ctl) { guard->state->acc->add(ctl, layers, rows); },
        [guard](Napi::Env e) { return e.Undefined(); });
  }

  Napi::Value Finalize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const size_t pair = GetCount(info[0], "pairIndex");
    const bool release = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    auto guard = Claim(env);
    auto result = std::make_shared<std::vector<float>>();
    return AsyncJob::Start(
        env, info[1],
        [guard, pair, result, release](JobControl& ctl) {
          *result = guard->state->acc->finalize(ctl, pair);
          if (release) guard->state->acc->release(pair);
        },
        [guard, result](Napi::Env e) -> Napi::Value {
          return ExternalF32(e, std::move(*result));  // V8 is told the size: 38 MB matrices at d_ff 3072
        });
  }

  Napi::Value Alignment(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const size_t pair = GetCount(info[0], "pairIndex");
    const bool release = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    auto guard = Claim(env);
    const CorrelationAccumulator& acc = *state_->acc;
    if (pair >= acc.pairs().size()) ThrowCode(env, "INVALID_ARGUMENT", "pair index " + std::to_string(pair) + " is out of range");
    const size_t d = acc.dims()[acc.pairs()[pair].first];
    if (acc.dims()[acc.pairs()[pair].second] != d)
      ThrowCode(env, "INVALID_ARGUMENT", "alignment needs a pair of layers of the same width");
    auto perm = std::make_shared<std::vector<int32_t>>();
    return AsyncJob::Start(
        env, info[1],
        [guard, pair, perm, release, d](JobControl& ctl) {
          std::vector<float> corr = guard->state->acc->finalize(ctl, pair);
          if (release) guard->state->acc->release(pair);
          const Assignment a = linear_sum_assignment(ctl, corr.data(), d, d, true);
          release_pages(corr.data(), corr.size() * sizeof(float));  // 0.5 GB at 7B width (core/large_buffer.h)
          perm->assign(d, 0);
          for (size_t k = 0; k < a.row_ind.size(); ++k) (*perm)[size_t(a.row_ind[k])] = a.col_ind[k];
        },
        [guard, perm](Napi::Env e) -> Napi::Value {
          auto out = Napi::Int32Array::New(e, perm->size());
          std::copy(perm->begin(), perm->end(), out.Data());
          return out;
        });
  }

  Napi::Value Explained(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const size_t pair = GetCount(info[0], "pairIndex");
    const bool release = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    auto guard = Claim(env);
    auto result = std::make_shared<std::vector<double>>();
    return AsyncJob::Start(
        env, info[1],
        [guard, pair, result, release](JobControl& ctl) {
          *result = guard->state->acc->explained(ctl, pair);
          if (release) guard->state->acc->release(pair);
        },
        [guard, result](Napi::Env e) { return ExternalF64(e, std::move(*result)); });
  }

  Napi::Value AddFF(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto guard = Claim(env);
    const std::vector<size_t>& dims = state_->acc->dims();
    if (dims.size() != 2) ThrowCode(env, "INVALID_ARGUMENT", "addFF feeds an accumulator of two layers: [FF units, targets]");
    const size_t m = dims[1];
    const FFRows in = ReadFFRows(info, dims[0], m);
    return AsyncJob::Start(
        env, info[5],
        [guard, in](JobControl& ctl) {
          CorrelationAccumulator& acc = *guard->state->acc;
          // blocks of 32M hidden units bound the scratch: 128 MB for H, as much again for a gate's product
          SumFFRows(ctl, in, size_t(32) << 20, {"NON_FINITE_ACTIVATIONS", "the FF inputs", "the targets", "unit", "this accumulator"},
                    [&](JobControl& step, const float* h, const float* y, size_t rows, size_t first) { acc.add(step, {h, y}, rows, first); },
                    [&] { acc.mark_broken(); });
        },
        [guard](Napi::Env e) { return e.Undefined(); });
  }

  // A synchronous call on the accumulator: refused while a job runs, core errors thrown as JS errors.
  template <class F>
  auto Sync(Napi::Env env, F&& f) -> decltype(f()) {
    if (state_->busy.load()) ThrowCode(env, "BUSY", "this correlation accumulator is running a job");
    return CallCore(env, std::forward<F>(f));
  }

  Napi::Value AddPair(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsNumber()) ThrowCode(env, "INVALID_ARGUMENT", "addPair(i, j) takes two layer indices");
    const int i = info[0].As<Napi::Number>().Int32Value(), j = info[1].As<Napi::Number>().Int32Value();
    return Sync(env, [&] {
      try {
        return Napi::Number::New(env, static_cast<double>(state_->acc->add_pair(i, j)));
      } catch (const std::bad_alloc&) {
        ThrowCode(env, "OUT_OF_MEMORY", "not enough memory for another correlation pair");
      }
    });
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    const size_t pair = GetCount(info[0], "pairIndex");
    Sync(info.Env(), [&] { state_->acc->release(pair); });
    return info.Env().Undefined();
  }

  Napi::Value PairCount(const Napi::CallbackInfo& info) {
    const size_t pair = GetCount(info[0], "pairIndex");
    return Sync(info.Env(), [&] { return Napi::Number::New(info.Env(), static_cast<double>(state_->acc->pair_count(pair))); });
  }

  Napi::Value Count(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(state_->acc->count()));
  }

  Napi::Value Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), state_->acc->backend()); }

  Napi::Value SetBlockRows(const Napi::CallbackInfo& info) {
    const size_t rows = GetCount(info[0], "blockRows");
    Sync(info.Env(), [&] { state_->acc->set_block_rows(rows); });
    return info.Env().Undefined();
  }

  std::shared_ptr<State> state_;
  std::shared_ptr<Reaper> reaper_;
};

}  // namespace

std::shared_ptr<CorrelationClaim> ClaimCorrelationAccumulator(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kAccumulatorTag))
    ThrowCode(v.Env(), "INVALID_ARGUMENT", "expected a native CorrelationAccumulator");
  return JsCorrelationAccumulator::Unwrap(v.As<Napi::Object>())->Claim(v.Env());
}

namespace {

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("CorrelationAccumulator", JsCorrelationAccumulator::Define(env));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
