// The training-free refit's least squares (core/ridge.h) and the select merge's column subset (core/select.h)
// on sums that live in native memory:
//   new RidgeSums(p, m)                       G = [H 1]ᵀ[H 1] ((p+1)², fp64) and C = [H 1]ᵀY ((p+1)×m), zero
//   sums.add(H n×p, Y n×m, n, onProgress?)    → {promise<void>, cancel}
//   sums.addFF(X n×d, n, ff, activation, Y n×m, onProgress?) → {promise<void>, cancel}
//       H = the hidden units of ff (binding/ff_binding.h: { wIn [p, d], bIn?, wGate?, bGate? }) on X,
//       computed in the job in row blocks: neither H nor its products ever pass through JS
//   sums.solve(lambdaRel, bias, columns: Int32Array | null, onProgress?) → {promise<{w, b}>, cancel}
//       X ((k+1)×m, fp64) solves the system of the listed columns (all p when null) plus the constant one;
//       with bias false the constant column is dropped (b is 0). It comes back as float32 W [m, k] (X's
//       first k rows transposed: W_out's layout) and b [m] (its last row), made in the job (X is 360 MB of
//       doubles at Llama-2-7B width, too much to split on the event loop).
//   sums.select(forced: Int32Array, count, lambdaRel, onProgress?) → {promise<Int32Array>, cancel}
//   sums.rows() → rows added
// Why native-resident: G is (p+1)² doubles (tens to hundreds of MB), which held in JS would be copied in and
// written back by every add on the main thread. One job at a time per RidgeSums (BUSY otherwise).
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "binding/async_job.h"
#include "binding/ff_binding.h"
#include "binding/reaper.h"
#include "binding/registry.h"
#include "core/error.h"
#include "core/finite.h"
#include "core/large_buffer.h"
#include "core/ridge.h"
#include "core/select.h"

namespace ffm::binding {
namespace {

std::vector<int32_t> GetIndices(const Napi::Value& v, const char* what) {
  size_t n = 0;
  const int32_t* a = GetI32(v, what, &n);
  return {a, a + n};
}

// calloc'd: a large allocation is fresh zero pages from the kernel, so creating sums costs the main thread
// nothing in proportion to their size.
struct Freer {
  void operator()(double* p) const { std::free(p); }
};
using Doubles = std::unique_ptr<double[], Freer>;

struct Sums {
  size_t p = 0, m = 0;
  Doubles G, C;
  double rows = 0;
  std::atomic<bool> busy{false};
  // An add that stopped between row blocks (aborted, or a later block of addFF refused) left part of its rows
  // in G and C, which nothing can take out: every later call is refused rather than solving silently wrong.
  bool broken = false;
  // G is 1–1.5 GB at 7B width: its pages go back before the free, wherever the last owner lets go
  // (core/large_buffer.h says why)
  ~Sums() {
    release_pages(G.get(), (p + 1) * (p + 1) * sizeof(double));
    release_pages(C.get(), (p + 1) * m * sizeof(double));
  }
};

struct Claim {
  explicit Claim(std::shared_ptr<Sums> s) : sums(std::move(s)) {}
  Claim(const Claim&) = delete;
  Claim& operator=(const Claim&) = delete;
  ~Claim() { sums->busy.store(false); }
  std::shared_ptr<Sums> sums;
};

class RidgeSums : public Napi::ObjectWrap<RidgeSums> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RidgeSums",
                       {InstanceMethod<&RidgeSums::Add>("add"), InstanceMethod<&RidgeSums::AddFF>("addFF"),
                        InstanceMethod<&RidgeSums::Solve>("solve"), InstanceMethod<&RidgeSums::Select>("select"),
                        InstanceMethod<&RidgeSums::Rows>("rows")});
  }

  // G is (p+1)² doubles (970 MB at Llama-2-7B width): freed off the main thread
  ~RidgeSums() override { reaper_->Drop(std::move(s_)); }

  explicit RidgeSums(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RidgeSums>(info) {
    Napi::Env env = info.Env();
    const size_t p = GetCount(info[0], "p"), m = GetCount(info[1], "m");
    if (p == 0 || m == 0) ThrowCode(env, "INVALID_ARGUMENT", "RidgeSums needs positive sizes");
    const size_t n = p + 1;
    if (n > SIZE_MAX / n / sizeof(double) || n > SIZE_MAX / m / sizeof(double))
      ThrowCode(env, "OUT_OF_MEMORY", "the least-squares sums for p = " + std::to_string(p) + " do not fit in memory");
    reaper_ = ReaperOf(env);
    s_ = std::make_shared<Sums>();
    s_->p = p;
    s_->m = m;
    s_->G.reset(static_cast<double*>(std::calloc(n * n, sizeof(double))));
    s_->C.reset(static_cast<double*>(std::calloc(n * m, sizeof(double))));
    if (!s_->G || !s_->C)
      ThrowCode(env, "OUT_OF_MEMORY", "not enough memory for the least-squares sums of " + std::to_string(p) +
                                          " columns (" + std::to_string(n * n * 8 / (1 << 20)) + " MiB)");
  }

 private:
  std::shared_ptr<Claim> Take(Napi::Env env) {
    bool expected = false;
    if (!s_->busy.compare_exchange_strong(expected, true))
      ThrowCode(env, "BUSY", "these least-squares sums are already running a job; await it before starting another");
    if (s_->broken) {
      s_->busy.store(false);
      ThrowCode(env, "INVALID_STATE",
                "these least-squares sums may hold part of a batch (an earlier add stopped before it finished); "
                "create new ones");
    }
    return std::make_shared<Claim>(s_);
  }

  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const size_t p = s_->p, m = s_->m, n = GetCount(info[2], "n");
    if (GetF32(info[0], "H").length != n * p) ThrowCode(env, "SHAPE_MISMATCH", "H must hold n×p values");
    if (GetF32(info[1], "Y").length != n * m) ThrowCode(env, "SHAPE_MISMATCH", "Y must hold n×m values");
    Owned<float> h = CopyTyped<float>(info[0], "H"), y = CopyTyped<float>(info[1], "Y");  // async_job.h: why
    auto claim = Take(env);
    return AsyncJob::Start(
        env, info[3],
        [=](JobControl& ctl) {
          Sums& s = *claim->sums;
          ridge_check_finite(ctl, h->data(), n, p, y->data(), m);  // the whole batch, before any sum changes
          try {
            ridge_accumulate(ctl, h->data(), n, p, y->data(), m, s.G.get(), s.C.get());
          } catch (...) {
            s.broken = true;
            throw;
          }
          s.rows += double(n);
        },
        [claim](Napi::Env e) { return e.Undefined(); });
  }

  Napi::Value AddFF(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const size_t p = s_->p, m = s_->m;
    const FFRows in = ReadFFRows(info, p, m);
    auto claim = Take(env);
    return AsyncJob::Start(
        env, info[5],
        [claim, in, p, m](JobControl& ctl) {
          Sums& s = *claim->sums;
          // blocks of 16M hidden units bound the scratch: 64 MB whatever the batch
          SumFFRows(ctl, in, size_t(16) << 20, {"NON_FINITE_INPUT", "refit: the inputs", "refit: the targets", "output", "these sums"},
                    [&](JobControl& step, const float* h, const float* y, size_t rows, size_t first) {
                      try {
                        ridge_accumulate(step, h, rows, p, y, m, s.G.get(), s.C.get(), first);
                      } catch (const Error&) {
                        throw;  // a refusal before the block's sums changed
                      } catch (...) {
                        s.broken = s.broken || ctl.cancelled();  // a stop inside may have left part of the block in
                        throw;
                      }
                      s.rows += double(rows);
                    },
                    [&] { s.broken = true; });
        },
        [claim](Napi::Env e) { return e.Undefined(); });
  }

  Napi::Value Solve(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) ThrowCode(env, "INVALID_ARGUMENT", "lambdaRel must be a number");
    const double lambda_rel = info[0].As<Napi::Number>().DoubleValue();
    const bool bias = info[1].ToBoolean();
    const size_t p = s_->p, m = s_->m;
    std::vector<int32_t> cols;
    const bool all = info[2].IsNull() || info[2].IsUndefined();
    if (!all) {
      cols = GetIndices(info[2], "columns");
      for (int32_t c : cols)
        if (c < 0 || size_t(c) >= p) ThrowCode(env, "INVALID_ARGUMENT", "a column index is out of range");
    }
    auto claim = Take(env);
    auto w = std::make_shared<std::vector<float>>(), b = std::make_shared<std::vector<float>>();
    return AsyncJob::Start(
        env, info[3],
        [=](JobControl& ctl) {
          const Sums& s = *claim->sums;
          // The sub-system of the listed columns (then the constant one), or the whole one in place.
          const size_t k = all ? p : cols.size(), n = p + 1, kn = k + 1;
          const double* G = s.G.get();
          const double* C = s.C.get();
          LargeVector<double> g, c;  // up to (p+1)² and (p+1)·m doubles: 1.5 GB and 0.45 GB at 7B width
          if (!all || !bias) {
            std::vector<size_t> idx(kn);
            for (size_t a = 0; a < k; ++a) idx[a] = all ? a : size_t(cols[a]);
            idx[k] = p;
            g.resize(kn * kn);
            c.resize(kn * m);
            for (size_t a = 0; a < kn; ++a) {
              ctl.check();
              for (size_t b = 0; b < kn; ++b) g[a * kn + b] = G[idx[a] * n + idx[b]];
              std::copy(C + idx[a] * m, C + idx[a] * m + m, c.begin() + a * m);
            }
            if (!bias) {  // no intercept: the constant column becomes an identity entry with zero targets
              for (size_t a = 0; a < kn; ++a) g[a * kn + k] = g[k * kn + a] = 0;
              g[k * kn + k] = 1;
              std::fill(c.begin() + k * m, c.end(), 0.0);
            }
            G = g.data();
            C = c.data();
          }
          LargeVector<double> X(kn * m);
          ridge_solve(ctl, G, C, k, m, lambda_rel, X.data());
          w->resize(m * k);
          b->resize(m);
          // transposed in tiles, so that both the reads of X and the writes of W stay in cache lines
          constexpr size_t kTile = 64;
          for (size_t i0 = 0; i0 < k; i0 += kTile) {
            ctl.check();
            const size_t i1 = std::min(k, i0 + kTile);
            for (size_t o0 = 0; o0 < m; o0 += kTile) {
              const size_t o1 = std::min(m, o0 + kTile);
              for (size_t i = i0; i < i1; ++i)
                for (size_t o = o0; o < o1; ++o) (*w)[o * k + i] = float(X[i * m + o]);
            }
          }
          for (size_t o = 0; o < m; ++o) (*b)[o] = float(X[k * m + o]);
        },
        [claim, w, b](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("w", ExternalF32(e, std::move(*w)));
          o.Set("b", ExternalF32(e, std::move(*b)));
          return o;
        });
  }

  Napi::Value Select(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<int32_t> forced = GetIndices(info[0], "forced");
    const size_t count = GetCount(info[1], "count");
    if (!info[2].IsNumber()) ThrowCode(env, "INVALID_ARGUMENT", "lambdaRel must be a number");
    const double lambda_rel = info[2].As<Napi::Number>().DoubleValue();
    auto claim = Take(env);
    auto out = std::make_shared<std::vector<int32_t>>();
    return AsyncJob::Start(
        env, info[3],
        [=](JobControl& ctl) {
          const Sums& s = *claim->sums;
          *out = greedy_select(ctl, s.G.get(), s.C.get(), s.p, s.m, forced, count, lambda_rel);
        },
        [claim, out](Napi::Env e) -> Napi::Value {
          auto a = Napi::Int32Array::New(e, out->size());
          std::copy(out->begin(), out->end(), a.Data());
          return a;
        });
  }

  Napi::Value Rows(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), s_->rows); }

  std::shared_ptr<Sums> s_;
  std::shared_ptr<Reaper> reaper_;
};

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("RidgeSums", RidgeSums::Define(env));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
