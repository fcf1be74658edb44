#include "core/model/weights.h"

#include <algorithm>

#include "core/error.h"
#include "core/model/stream.h"

namespace ffm::model {

void Tensor::read_f32(size_t offset, size_t n, float* dst) const {
  if (buf) std::copy(buf->data() + offset, buf->data() + offset + n, dst);
  else half_to_f32(half_type(), half.get() + offset, dst, n);
}

Buffer Tensor::as_f32() const {
  if (buf || !half) return buf;
  auto v = std::make_shared<std::vector<float>>(half_size);
  read_f32(0, half_size, v->data());
  return v;
}

bool may_stay_half(const std::string& slot) {
  static const char* const kTop[] = {"tok_emb", "lm_head_w", "pooler_w", "classifier_w", "patch_w"};
  for (const char* t : kTop)
    if (slot == t) return true;
  if (slot.compare(0, 7, "layers.") != 0) return false;
  const size_t dot = slot.find('.', 7);
  if (dot == std::string::npos) return false;
  const std::string rest = slot.substr(dot + 1);
  static const char* const kLayer[] = {"qkv_w", "o_w", "xq_w", "xkv_w", "xo_w", "ff.w_in", "ff.w_gate", "ff.w_out"};
  for (const char* t : kLayer)
    if (rest == t) return true;
  return false;
}

namespace {

void check_size(const Tensor& t, size_t want, const std::string& name) {
  if (t.size() != want)
    throw Error("SHAPE_MISMATCH", "tensor \"" + name + "\" has " + std::to_string(t.size()) + " elements, expected " +
                                      std::to_string(want));
}

struct Lookup {
  const std::map<std::string, Tensor>& tensors;
  Tensor required(const std::string& name, size_t want) const {
    Tensor t = optional(name, want);
    if (!t) throw Error("TENSOR_NOT_FOUND", "model weights are missing tensor \"" + name + "\"");
    return t;
  }
  Tensor optional(const std::string& name, size_t want) const {
    auto it = tensors.find(name);
    if (it == tensors.end() || !it->second) return {};
    const Tensor& t = it->second;
    check_size(t, want, name);
    // A 16-bit tensor in a slot that is read as float32 is widened (norms, biases, position tables are small).
    return !t.is_half() || may_stay_half(name) ? t : Tensor::f32(t.as_f32());
  }
};

void validate_spec(const ModelSpec& s) {
  auto need = [](size_t v, const char* field) {
    if (v == 0) throw Error("INVALID_CONFIG", std::string("model spec: ") + field + " must be positive");
  };
  need(s.layers, "layers");
  need(s.d_model, "d_model");
  need(s.n_heads, "n_heads");
  need(s.n_kv_heads, "n_kv_heads");
  need(s.head_dim, "head_dim");
  need(s.d_ff, "d_ff");
  if (s.input == InputKind::Tokens || s.head == HeadKind::LMHead) need(s.vocab, "vocab");
  if (s.input == InputKind::Patches) {
    need(s.channels, "channels");
    need(s.patch, "patch");
    need(s.image_h, "image_h");
    need(s.image_w, "image_w");
    if (s.image_h % s.patch != 0 || s.image_w % s.patch != 0)
      throw Error("INVALID_CONFIG", "model spec: image size " + std::to_string(s.image_h) + "x" +
                                        std::to_string(s.image_w) + " is not a multiple of the patch size " +
                                        std::to_string(s.patch));
  }
  if (s.head == HeadKind::Classifier) need(s.num_labels, "num_labels");
  if (s.n_heads % s.n_kv_heads != 0)
    throw Error("INVALID_CONFIG", "model spec: n_heads (" + std::to_string(s.n_heads) +
                                      ") must be a multiple of n_kv_heads (" + std::to_string(s.n_kv_heads) + ")");
  if (s.positions == PositionKind::Learned) need(s.max_positions, "max_positions");
  if (!s.sliding_window.empty() && s.sliding_window.size() != s.layers)
    throw Error("INVALID_CONFIG", "model spec: sliding_window lists " + std::to_string(s.sliding_window.size()) +
                                      " layers, the stack has " + std::to_string(s.layers));
  for (size_t w : s.sliding_window)
    if (w && !s.causal) throw Error("INVALID_CONFIG", "model spec: sliding-window attention needs causal attention");
  if (s.qk_norm && s.norm != NormKind::RMSNorm)
    throw Error("INVALID_CONFIG", "model spec: qk_norm (a per-head RMSNorm of q and k) needs RMSNorm");
  if (s.positions == PositionKind::Rotary) {
    size_t rd = s.rope_dim ? s.rope_dim : s.head_dim;
    if (rd % 2 != 0 || rd > s.head_dim)
      throw Error("INVALID_CONFIG", "model spec: the rotary dimension must be even and at most head_dim");
  }
}

}  // namespace

void validate_ff(const ModelSpec& s, const FFWeights& ff, const std::string& where) {
  const size_t d = s.d_model, f = s.d_ff;
  auto req = [&](const Tensor& t, size_t want, const char* slot) {
    if (!t) throw Error("TENSOR_NOT_FOUND", "FF weights of " + where + " are missing " + slot);
    check_size(t, want, where + "." + slot);
  };
  auto opt = [&](const Tensor& t, size_t want, const char* slot) {
    if (t) check_size(t, want, where + "." + slot);
  };
  req(ff.w_in, f * d, "w_in");
  opt(ff.b_in, f, "b_in");
  if (s.gated_ff) {
    req(ff.w_gate, f * d, "w_gate");
    opt(ff.b_gate, f, "b_gate");
  } else if (ff.w_gate) {
    throw Error("INVALID_ARGUMENT", "FF weights of " + where + " have a gate, but this model's FF is not gated");
  }
  req(ff.w_out, d * f, "w_out");
  opt(ff.b_out, d, "b_out");
}

Model build_model(const ModelSpec& spec, const std::map<std::string, Buffer>& buffers) {
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, b] : buffers) tensors[name] = Tensor::f32(b);
  return build_model(spec, tensors);
}

Model build_model(const ModelSpec& spec, const std::map<std::string, Tensor>& tensors) {
  Model m = build_model_top(spec, tensors);
  m.w.layers.resize(spec.layers);
  // A tied checkpoint names one stored FF from several layers; its tensors arrive as one buffer each, and
  // those layers get one FFWeights too, so the tie is the same FF (sharesFF, training, writing) from load on.
  std::map<std::vector<const void*>, std::shared_ptr<const FFWeights>> ffs;
  for (size_t l = 0; l < spec.layers; ++l) {
    m.w.layers[l] = build_layer(spec, l, tensors);
    const FFWeights& f = *m.w.layers[l].ff;
    auto [it, fresh] = ffs.emplace(std::vector<const void*>{f.w_in.id(), f.b_in.id(), f.w_gate.id(), f.b_gate.id(), f.w_out.id(), f.b_out.id()}, m.w.layers[l].ff);
    if (!fresh) m.w.layers[l].ff = it->second;
  }
  return m;
}

Model build_model_top(const ModelSpec& spec, const std::map<std::string, Tensor>& tensors) {
  validate_spec(spec);
  const size_t d = spec.d_model, V = spec.vocab;
  Lookup get{tensors};
  Model m;
  m.spec = spec;
  if (spec.input == InputKind::Tokens) {
    m.w.tok_emb = get.required("tok_emb", V * d);
  } else {
    m.w.patch_w = get.required("patch_w", d * spec.patch_dim());
    m.w.patch_b = get.optional("patch_b", d);
    m.w.cls_token = get.required("cls_token", d);
    if (spec.positions == PositionKind::Learned && spec.max_positions != 1 + spec.patches())
      throw Error("INVALID_CONFIG", "model spec: " + std::to_string(spec.patches()) + " patches + CLS need " +
                                        std::to_string(1 + spec.patches()) + " positions, the table has " +
                                        std::to_string(spec.max_positions));
  }
  if (spec.positions == PositionKind::Learned) m.w.pos_emb = get.required("pos_emb", spec.max_positions * d);
  if (spec.type_vocab) m.w.type_emb = get.required("type_emb", spec.type_vocab * d);
  if (spec.embed_norm) {
    m.w.embed_norm_w = get.required("embed_norm_w", d);
    m.w.embed_norm_b = get.optional("embed_norm_b", d);
  }
  if (spec.final_norm) {
    m.w.final_norm_w = get.required("final_norm_w", d);
    m.w.final_norm_b = get.optional("final_norm_b", d);
  }
  if (spec.head == HeadKind::LMHead) {
    m.w.lm_head_w = get.optional("lm_head_w", V * d);
    if (!m.w.lm_head_w) {
      if (!m.w.tok_emb) throw Error("TENSOR_NOT_FOUND", "model weights are missing tensor \"lm_head_w\"");
      m.w.lm_head_w = m.w.tok_emb;  // tied
    }
    m.w.lm_head_b = get.optional("lm_head_b", V);
  } else if (spec.head == HeadKind::Classifier) {
    if (spec.pooler) {
      m.w.pooler_w = get.required("pooler_w", d * d);
      m.w.pooler_b = get.optional("pooler_b", d);
    }
    m.w.classifier_w = get.required("classifier_w", spec.num_labels * d);
    m.w.classifier_b = get.optional("classifier_b", spec.num_labels);
  }
  if (spec.norm == NormKind::RMSNorm) {
    // RMSNorm has a scale only; a bias here means the spec and the checkpoint disagree.
    for (const auto& [name, buf] : tensors) {
      const bool norm_bias = name == "final_norm_b" || (name.size() > 7 && (name.compare(name.size() - 7, 7, "norm1_b") == 0 ||
                                                                          name.compare(name.size() - 7, 7, "norm2_b") == 0));
      if (norm_bias) throw Error("INVALID_ARGUMENT", "tensor \"" + name + "\" is a norm bias, but RMSNorm has none");
    }
  }
  return m;
}

LayerWeights build_layer(const ModelSpec& spec, size_t l, const std::map<std::string, Tensor>& tensors) {
  const size_t d = spec.d_model, hd = spec.head_dim;
  Lookup get{tensors};
  LayerWeights L;
  const std::string p = "layers." + std::to_string(l) + ".";
  L.norm1_w = get.required(p + "norm1_w", d);
  L.norm1_b = get.optional(p + "norm1_b", d);
  L.qkv_w = get.required(p + "qkv_w", spec.qkv_width() * d);
  L.qkv_b = get.optional(p + "qkv_b", spec.qkv_width());
  if (spec.qk_norm) {
    L.q_norm_w = get.required(p + "q_norm_w", hd);
    L.k_norm_w = get.required(p + "k_norm_w", hd);
  }
  L.o_w = get.required(p + "o_w", d * spec.n_heads * hd);
  L.o_b = get.optional(p + "o_b", d);
  L.norm2_w = get.required(p + "norm2_w", d);
  L.norm2_b = get.optional(p + "norm2_b", d);
  if (spec.cross_attention) {
    const size_t qw = spec.n_heads * hd, kw = spec.n_kv_heads * hd;
    L.xnorm_w = get.required(p + "xnorm_w", d);
    L.xnorm_b = get.optional(p + "xnorm_b", d);
    L.xq_w = get.required(p + "xq_w", qw * d);
    L.xq_b = get.optional(p + "xq_b", qw);
    L.xkv_w = get.required(p + "xkv_w", 2 * kw * d);  // fused [k; v] over the encoder states
    L.xkv_b = get.optional(p + "xkv_b", 2 * kw);
    L.xo_w = get.required(p + "xo_w", d * qw);
    L.xo_b = get.optional(p + "xo_b", d);
  }
  auto ff = std::make_shared<FFWeights>();
  ff->w_in = get.required(p + "ff.w_in", spec.d_ff * d);
  ff->b_in = get.optional(p + "ff.b_in", spec.d_ff);
  if (spec.gated_ff) {
    ff->w_gate = get.required(p + "ff.w_gate", spec.d_ff * d);
    ff->b_gate = get.optional(p + "ff.b_gate", spec.d_ff);
  }
  ff->w_out = get.required(p + "ff.w_out", d * spec.d_ff);
  ff->b_out = get.optional(p + "ff.b_out", d);
  L.ff = std::move(ff);
  return L;
}

std::shared_ptr<const LayerWeights> layer_weights(JobControl& ctl, const Model& m, size_t l) {
  const LayerWeights& L = m.w.layers[l];
  if (L.streamed < 0) return std::shared_ptr<const LayerWeights>(std::shared_ptr<const LayerWeights>{}, &L);
  if (!m.stream) throw Error("INVALID_STATE", "layer " + std::to_string(l) + " is streamed, but the model has no stream");
  auto stored = m.stream->acquire(ctl, size_t(L.streamed));
  if (!L.ff) return stored;
  auto view = std::make_shared<LayerWeights>(*stored);  // shares the stored tensors, so they live as long
  view->ff = L.ff;
  return view;
}

std::shared_ptr<const Model> with_ff(const std::shared_ptr<const Model>& base,
                                     const std::vector<std::pair<size_t, std::shared_ptr<const FFWeights>>>& overrides) {
  auto view = std::make_shared<Model>(*base);  // copies pointers only
  for (const auto& [layer, ff] : overrides) {
    if (layer >= view->spec.layers)
      throw Error("INVALID_ARGUMENT", "FF override for layer " + std::to_string(layer) + ", but the model has " +
                                          std::to_string(view->spec.layers) + " layers");
    if (!ff) throw Error("INVALID_ARGUMENT", "FF override for layer " + std::to_string(layer) + " is empty");
    validate_ff(view->spec, *ff, "layer " + std::to_string(layer));
    view->w.layers[layer].ff = ff;
  }
  return view;
}

}  // namespace ffm::model
