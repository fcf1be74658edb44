#include "binding/spec_binding.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "binding/async_job.h"

namespace ffm::binding {
namespace {

[[noreturn]] void Bad(const Napi::Object& o, const char* key, const std::string& why) {
  ThrowCode(o.Env(), "INVALID_ARGUMENT", std::string("model spec: field \"") + key + "\" " + why);
}

Napi::Value Field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) Bad(o, key, "is missing");
  return v;
}

size_t Count(const Napi::Object& o, const char* key) {
  Napi::Value v = Field(o, key);
  if (!v.IsNumber()) Bad(o, key, "must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740992.0) Bad(o, key, "must be a non-negative integer");
  return size_t(d);
}

float Float(const Napi::Object& o, const char* key) {
  Napi::Value v = Field(o, key);
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) Bad(o, key, "must be a finite number");
  return v.As<Napi::Number>().FloatValue();
}

bool Flag(const Napi::Object& o, const char* key) {
  Napi::Value v = Field(o, key);
  if (!v.IsBoolean()) Bad(o, key, "must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string Str(const Napi::Object& o, const char* key) {
  Napi::Value v = Field(o, key);
  if (!v.IsString()) Bad(o, key, "must be a string");
  return v.As<Napi::String>().Utf8Value();
}

template <typename E>
E Enum(const Napi::Object& o, const char* key, std::initializer_list<std::pair<const char*, E>> values) {
  const std::string s = Str(o, key);
  std::string names;
  for (const auto& [name, e] : values) {
    if (s == name) return e;
    names += names.empty() ? name : std::string(", ") + name;
  }
  Bad(o, key, "is \"" + s + "\", expected one of " + names);
}

std::vector<size_t> Counts(const Napi::Object& o, const char* key) {
  Napi::Value v = Field(o, key);
  if (!v.IsArray()) Bad(o, key, "must be an array of non-negative integers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<size_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740992.0) Bad(o, key, "must be an array of non-negative integers");
    out[i] = size_t(d);
  }
  return out;
}

}  // namespace

model::ModelSpec ParseModelSpec(const Napi::Object& o) {
  using namespace model;
  ModelSpec s;
  s.family = Str(o, "family");
  s.layers = Count(o, "layers");
  s.d_model = Count(o, "dModel");
  s.n_heads = Count(o, "nHeads");
  s.n_kv_heads = Count(o, "nKvHeads");
  s.head_dim = Count(o, "headDim");
  s.d_ff = Count(o, "dFF");
  s.vocab = Count(o, "vocab");
  s.max_positions = Count(o, "maxPositions");
  s.norm = Enum<NormKind>(o, "norm", {{"layernorm", NormKind::LayerNorm}, {"rmsnorm", NormKind::RMSNorm}});
  s.placement = Enum<NormPlacement>(o, "normPlacement", {{"pre", NormPlacement::Pre}, {"post", NormPlacement::Post}});
  s.norm_eps = Float(o, "normEps");
  s.final_norm = Flag(o, "finalNorm");
  s.positions = Enum<PositionKind>(o, "positions",
                                   {{"learned", PositionKind::Learned},
                                    {"rotary", PositionKind::Rotary},
                                    {"sinusoidal", PositionKind::Sinusoidal},
                                    {"none", PositionKind::None}});
  s.rope_theta = Float(o, "ropeTheta");
  s.rope_dim = Count(o, "ropeDim");
  // the one optional field (lib/model/spec.ts: absent = no scaling, as specs written before it meant)
  if (Napi::Value v = o.Get("ropeScaling"); !v.IsUndefined()) {
    if (!v.IsObject()) Bad(o, "ropeScaling", "must be an object { type, factor, lowFreqFactor, highFreqFactor, originalMaxPositions }");
    const Napi::Object r = v.As<Napi::Object>();
    s.rope_scaling.type = Enum<nn::RopeScaling::Type>(r, "type",
                                                      {{"none", nn::RopeScaling::Type::None},
                                                       {"linear", nn::RopeScaling::Type::Linear},
                                                       {"llama3", nn::RopeScaling::Type::Llama3}});
    s.rope_scaling.factor = Float(r, "factor");
    s.rope_scaling.low_freq_factor = Float(r, "lowFreqFactor");
    s.rope_scaling.high_freq_factor = Float(r, "highFreqFactor");
    s.rope_scaling.original_max_positions = Float(r, "originalMaxPositions");
  }
  // optional as ropeScaling is: absent = none
  if (Napi::Value v = o.Get("qkNorm"); !v.IsUndefined()) s.qk_norm = Flag(o, "qkNorm");
  s.activation = Enum<nn::Activation>(o, "activation",
                                      {{"gelu_new", nn::Activation::GeluNew},
                                       {"gelu", nn::Activation::GeluErf},
                                       {"silu", nn::Activation::Silu},
                                       {"relu", nn::Activation::Relu}});
  s.gated_ff = Flag(o, "gatedFF");
  s.causal = Flag(o, "causal");
  s.sliding_window = Counts(o, "slidingWindow");
  s.embed_scale = Float(o, "embedScale");
  s.cross_attention = Flag(o, "crossAttention");
  s.input = Enum<InputKind>(o, "input", {{"tokens", InputKind::Tokens}, {"patches", InputKind::Patches}});
  s.channels = Count(o, "channels");
  s.image_h = Count(o, "imageH");
  s.image_w = Count(o, "imageW");
  s.patch = Count(o, "patch");
  s.type_vocab = Count(o, "typeVocab");
  s.embed_norm = Flag(o, "embedNorm");
  s.head = Enum<HeadKind>(o, "head", {{"lm", HeadKind::LMHead}, {"classifier", HeadKind::Classifier}, {"none", HeadKind::None}});
  s.num_labels = Count(o, "numLabels");
  s.pooler = Flag(o, "pooler");
  return s;
}

}  // namespace ffm::binding
