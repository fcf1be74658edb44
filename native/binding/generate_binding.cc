// Greedy / beam-search decoding of encoder–decoder models as one native job (encoder once, decoder on a KV
// cache).
//
// modelGenerate(encoder, decoder, args, onProgress) → {promise, cancel}, promise → {ids: Int32Array
// [batch, length], length}. args: {ids: Int32Array [batch, seq], batch, seq, attentionMask?: Uint8Array,
// decoderStart, eos, pad, forcedEos, maxLength, badWords: number[][], numBeams?, lengthPenalty?, renormalize?,
// earlyStopping?};
// eos/forcedEos −1 = none.
//
// modelSample(model, args, onProgress) → {promise, cancel}, promise → Int32Array [rows, length]: ancestral
// sampling from a decoder-only LM on a KV cache (core/model/sample.h). args: {rows, length, start, temperature,
// seed (uint32), group}.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "binding/async_job.h"
#include "binding/model_handle.h"
#include "binding/registry.h"
#include "core/model/generate.h"
#include "core/model/sample.h"

namespace ffm::binding {
namespace {

int32_t GetInt(const Napi::Object& o, const char* key, int32_t dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) ThrowCode(o.Env(), "INVALID_ARGUMENT", std::string("generate: ") + key + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

Napi::Value Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto enc = UnwrapModel(info[0]);
  auto dec = UnwrapModel(info[1]);
  if (!info[2].IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "modelGenerate(encoder, decoder, args, onProgress)");
  Napi::Object a = info[2].As<Napi::Object>();
  const int32_t batch = GetInt(a, "batch", 0), seq = GetInt(a, "seq", 0);
  if (batch <= 0 || seq <= 0) ThrowCode(env, "INVALID_ARGUMENT", "generate: batch and seq must be positive");
  size_t n = 0;
  GetI32(a.Get("ids"), "ids", &n);
  if (n != size_t(batch) * size_t(seq)) ThrowCode(env, "INVALID_ARGUMENT", "generate: ids must have batch·seq entries");
  // Copied for the worker (async_job.h says why).
  Owned<int32_t> ids = CopyTyped<int32_t>(a.Get("ids"), "ids");
  Owned<uint8_t> mask;
  Napi::Value mv = a.Get("attentionMask");
  if (!mv.IsUndefined()) {
    if (!mv.IsTypedArray() || mv.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        mv.As<Napi::Uint8Array>().ElementLength() != n)
      ThrowCode(env, "INVALID_ARGUMENT", "generate: attentionMask must be a Uint8Array of batch·seq entries");
    mask = CopyTyped<uint8_t>(mv, "attentionMask");
  }
  model::GreedyOptions opt;
  opt.decoder_start = GetInt(a, "decoderStart", 0);
  opt.eos = GetInt(a, "eos", -1);
  opt.pad = GetInt(a, "pad", 0);
  opt.forced_eos = GetInt(a, "forcedEos", -1);
  const int32_t max_length = GetInt(a, "maxLength", 64);
  if (max_length < 2) ThrowCode(env, "INVALID_ARGUMENT", "generate: maxLength must be at least 2");
  opt.max_length = size_t(max_length);
  if (a.Get("badWords").IsArray()) {
    Napi::Array bw = a.Get("badWords").As<Napi::Array>();
    for (uint32_t i = 0; i < bw.Length(); ++i) {
      if (!bw.Get(i).IsArray()) ThrowCode(env, "INVALID_ARGUMENT", "generate: badWords must be a list of id lists");
      Napi::Array w = bw.Get(i).As<Napi::Array>();
      std::vector<int32_t> word;
      for (uint32_t j = 0; j < w.Length(); ++j) word.push_back(w.Get(j).ToNumber().Int32Value());
      opt.bad_words.push_back(std::move(word));
    }
  }
  const int32_t beams = GetInt(a, "numBeams", 1);
  if (beams < 1) ThrowCode(env, "INVALID_ARGUMENT", "generate: numBeams must be at least 1");
  opt.num_beams = size_t(beams);
  Napi::Value lp = a.Get("lengthPenalty");
  if (lp.IsNumber()) opt.length_penalty = lp.As<Napi::Number>().FloatValue();
  opt.renormalize = a.Get("renormalize").ToBoolean().Value();
  opt.early_stopping = a.Get("earlyStopping").ToBoolean().Value();
  auto result = std::make_shared<model::GreedyResult>();
  const size_t B = size_t(batch), S = size_t(seq);
  return AsyncJob::Start(
      env, info[3],
      [enc, dec, ids, mask, B, S, opt, result](JobControl& ctl) {
        *result = model::greedy_generate(ctl, *enc, *dec, ids->data(), mask ? mask->data() : nullptr, B, S, opt);
      },
      [result](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        auto arr = Napi::Int32Array::New(env, result->ids.size());
        std::copy(result->ids.begin(), result->ids.end(), arr.Data());
        o.Set("ids", arr);
        o.Set("length", double(result->length));
        return o;
      });
}

Napi::Value Sample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = UnwrapModel(info[0]);
  if (!info[1].IsObject()) ThrowCode(env, "INVALID_ARGUMENT", "modelSample(model, args, onProgress)");
  Napi::Object a = info[1].As<Napi::Object>();
  model::SampleOptions opt;
  opt.rows = GetCount(a.Get("rows"), "sample: rows");
  opt.length = GetCount(a.Get("length"), "sample: length");
  opt.group = GetCount(a.Get("group"), "sample: group");
  opt.start = GetInt(a, "start", -1);
  opt.seed = uint32_t(GetCount(a.Get("seed"), "sample: seed"));
  if (!a.Get("temperature").IsNumber()) ThrowCode(env, "INVALID_ARGUMENT", "sample: temperature must be a number");
  opt.temperature = a.Get("temperature").As<Napi::Number>().DoubleValue();
  auto result = std::make_shared<std::vector<int32_t>>();
  return AsyncJob::Start(
      env, info[2], [m, opt, result](JobControl& ctl) { *result = model::sample_rows(ctl, *m, opt); },
      [result](Napi::Env env) -> Napi::Value {
        auto arr = Napi::Int32Array::New(env, result->size());
        std::copy(result->begin(), result->end(), arr.Data());
        return arr;
      });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("modelGenerate", Napi::Function::New(env, Generate, "modelGenerate"));
  exports.Set("modelSample", Napi::Function::New(env, Sample, "modelSample"));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
