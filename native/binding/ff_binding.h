// What the FF jobs share: an FF's weights copied for a worker, and its hidden units / output computed there.
#pragma once
#include <napi.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "binding/async_job.h"
#include "core/model/weights.h"
#include "core/nn/ops.h"
#include "core/thread_pool.h"

namespace ffm::binding {

// Floats a job reads, kept alive by whoever holds the pointer (a job's own copy, or a NativeFF's buffer).
using SharedFloats = std::shared_ptr<const float>;

// W_in [units, d] with b_in, and optionally W_gate/b_gate (SwiGLU) and W_out [d, units]/b_out; null members
// are absent. Read from a JS object { wIn, bIn?, wGate?, bGate?, wOut?, bOut? } of Float32Arrays, or shared
// with a NativeFF.
struct FFCopy {
  size_t d = 0, units = 0;
  nn::Activation act = nn::Activation::GeluNew;
  SharedFloats w_in, b_in, w_gate, b_gate, w_out, b_out;
};

// The weights of `ff` (units × d, shapes checked) for a worker; with_out: W_out/b_out too. A JS object's
// arrays are copied; a NativeFF's buffers are shared, not copied (it refuses set() while a job holds them),
// which is what lets a pool of k FFs (3.2 GB at Llama-2-7B width with k = 9) feed many jobs.
FFCopy CopyFF(const Napi::Value& ff, size_t d, size_t units, const Napi::Value& activation, bool with_out);

// The arguments of an addFF job, (X [n, d], n, ff, activation, Y [n, m]) at info[0..4], checked (ff of `units`
// units, Y of m columns) and copied for the worker; X or Y given as StagedFloats (lib/native/staged.ts) is
// shared instead, so a 7B-width batch (67 MB of X and Y) is not copied into fresh pages on the main thread.
struct FFRows {
  FFCopy ff;
  model::Buffer x, y;
  size_t n = 0, d = 0, m = 0;
};
FFRows ReadFFRows(const Napi::CallbackInfo& info, size_t units, size_t m);

// h [rows, units] = act(x·W_inᵀ + b_in), or act(x·W_gateᵀ + b_gate) · (x·W_inᵀ + b_in); scratch holds the
// gate product (rows × units floats) when there is a gate.
void FFHidden(ThreadPool& pool, const FFCopy& ff, const float* x, size_t rows, float* h, std::vector<float>& scratch);

// What an addFF job calls its rows when it refuses them.
struct FFRowWords {
  const char* code;     // the refusal's code
  const char* inputs;   // "the FF inputs"
  const char* targets;  // "the targets"
  const char* column;   // a target's column: "unit", "output"
  const char* sums;     // what can no longer be used after a partial add: "this accumulator"
};

// Feeds `in`'s rows to sum(step, h, y, rows, first row) block by block (at most block_floats hidden units, which
// bounds the scratch whatever the batch); `step` is the job's control without its progress, which counts the
// batch's rows. The inputs and targets are checked whole first: a bad row refuses the batch and
// the sums stay as they were (a NaN input through relu gives hidden units of 0, so checking H alone lets it in).
// A failure after the first block calls broken(): the blocks before it are in the sums for good, and the
// message says so. A sum that can stop half-way through its own block marks itself broken.
void SumFFRows(JobControl& ctl, const FFRows& in, size_t block_floats, const FFRowWords& words,
               const std::function<void(JobControl& step, const float* h, const float* y, size_t rows, size_t first)>& sum, const std::function<void()>& broken);

// A Float32Array that takes the vector over (no copy); V8 is told its size so it collects in time, and the
// reaper frees it (not the finalizer, on the event loop).
Napi::Value ExternalF32(Napi::Env env, std::vector<float>&& v);
Napi::Value ExternalF64(Napi::Env env, std::vector<double>&& v);

}  // namespace ffm::binding
