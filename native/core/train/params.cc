#include "core/train/params.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"

namespace ffm::train {

void check_finite(const ParamSet& ps, size_t steps) {
  for (const Param& p : ps.params) {
    if (!p.trainable) continue;
    if (std::all_of(p.w.begin(), p.w.end(), [](float x) { return std::isfinite(x); })) continue;
    throw Error("NON_FINITE_ACTIVATIONS", "training diverged: after step " + std::to_string(steps) + " the weights of " + p.name +
                                              " hold NaN or Inf (the learning rate or weight decay is too high); nothing is saved");
  }
}

namespace {

// Slot visitor shared by the walks below (build, name), so they can never disagree on order. `w` may be
// nullptr (names and indices only): fn then gets a null tensor.
template <class Fn>
void for_each_slot(const model::ModelWeights* w, ParamSet& ps, Fn&& fn) {
  static const model::Tensor none;
  auto t = [&](const model::Tensor& x) -> const model::Tensor& { return w ? x : none; };
  const model::ModelWeights empty;
  const model::ModelWeights& W = w ? *w : empty;
  fn("tok_emb", t(W.tok_emb), ps.tok_emb, true, false);
  fn("pos_emb", t(W.pos_emb), ps.pos_emb, true, false);
  fn("patch_w", t(W.patch_w), ps.patch_w, true, false);
  fn("patch_b", t(W.patch_b), ps.patch_b, false, false);
  fn("cls_token", t(W.cls_token), ps.cls_token, false, false);
  for (size_t l = 0; l < ps.layers.size(); ++l) {
    auto& S = ps.layers[l];
    const model::LayerWeights* L = w ? &w->layers[l] : nullptr;
    const model::FFWeights* F = L ? L->ff.get() : nullptr;
    auto lt = [&](model::Tensor model::LayerWeights::*m) -> const model::Tensor& { return L ? L->*m : none; };
    auto ft = [&](model::Tensor model::FFWeights::*m) -> const model::Tensor& { return F ? F->*m : none; };
    const std::string p = "layers." + std::to_string(l) + ".";
    fn(p + "norm1_w", lt(&model::LayerWeights::norm1_w), S.norm1_w, false, false);
    fn(p + "norm1_b", lt(&model::LayerWeights::norm1_b), S.norm1_b, false, false);
    fn(p + "qkv_w", lt(&model::LayerWeights::qkv_w), S.qkv_w, true, false);
    fn(p + "qkv_b", lt(&model::LayerWeights::qkv_b), S.qkv_b, false, false);
    fn(p + "q_norm_w", lt(&model::LayerWeights::q_norm_w), S.q_norm_w, false, false);
    fn(p + "k_norm_w", lt(&model::LayerWeights::k_norm_w), S.k_norm_w, false, false);
    fn(p + "o_w", lt(&model::LayerWeights::o_w), S.o_w, true, false);
    fn(p + "o_b", lt(&model::LayerWeights::o_b), S.o_b, false, false);
    fn(p + "norm2_w", lt(&model::LayerWeights::norm2_w), S.norm2_w, false, false);
    fn(p + "norm2_b", lt(&model::LayerWeights::norm2_b), S.norm2_b, false, false);
    fn(p + "ff.w_in", ft(&model::FFWeights::w_in), S.w_in, true, true);
    fn(p + "ff.b_in", ft(&model::FFWeights::b_in), S.b_in, false, true);
    fn(p + "ff.w_gate", ft(&model::FFWeights::w_gate), S.w_gate, true, true);
    fn(p + "ff.b_gate", ft(&model::FFWeights::b_gate), S.b_gate, false, true);
    fn(p + "ff.w_out", ft(&model::FFWeights::w_out), S.w_out, true, true);
    fn(p + "ff.b_out", ft(&model::FFWeights::b_out), S.b_out, false, true);
  }
  fn("final_norm_w", t(W.final_norm_w), ps.final_norm_w, false, false);
  fn("final_norm_b", t(W.final_norm_b), ps.final_norm_b, false, false);
  fn("lm_head_w", t(W.lm_head_w), ps.lm_head_w, true, false);
  fn("lm_head_b", t(W.lm_head_b), ps.lm_head_b, false, false);
  fn("classifier_w", t(W.classifier_w), ps.classifier_w, true, false);
  fn("classifier_b", t(W.classifier_b), ps.classifier_b, false, false);
}

}  // namespace

ParamSet params_from_model(const model::Model& m, Trainable which, JobControl* ctl, bool progress) {
  ParamSet ps;
  ps.layers.resize(m.w.layers.size());
  size_t total = 0, done = 0;
  if (ctl && progress) {
    ParamSet scratch;  // the walk's slot indices land here: only the count is wanted
    scratch.layers.resize(m.w.layers.size());
    for_each_slot(&m.w, scratch, [&](const std::string&, const model::Tensor& t, int&, bool, bool) { total += t ? 1 : 0; });
  }
  std::map<const void*, int> seen;  // buffer → param index: one buffer in two slots is a tie
  for_each_slot(&m.w, ps, [&](const std::string& name, const model::Tensor& t, int& slot, bool matrix, bool ff) {
    if (!t) return;
    if (ctl && progress) ctl->progress(double(done++), double(total));
    auto it = seen.find(t.id());
    if (it != seen.end()) {
      slot = it->second;
      ps.params[size_t(slot)].uses += 1;
      return;
    }
    if (ctl) ctl->check();
    Param p;
    p.name = name;
    p.w.resize(t.size());
    t.read_f32(0, t.size(), p.w.data());  // widens a 16-bit tensor; training keeps fp32 master weights
    p.matrix = matrix;
    p.trainable = which == Trainable::All || ff;
    p.uses = 1;
    if (p.trainable) p.g.assign(p.w.size(), 0.0f);
    slot = int(ps.params.size());
    seen[t.id()] = slot;
    ps.params.push_back(std::move(p));
  });
  if (ctl && progress) ctl->progress(double(total), double(total));
  return ps;
}

std::vector<std::pair<std::string, int>> ParamSet::slots() const {
  std::vector<std::pair<std::string, int>> out;
  ParamSet copy;  // the walk takes slot references; the index table is all it reads (no weights copied)
  copy.tok_emb = tok_emb, copy.pos_emb = pos_emb, copy.final_norm_w = final_norm_w;
  copy.final_norm_b = final_norm_b, copy.lm_head_w = lm_head_w, copy.lm_head_b = lm_head_b;
  copy.patch_w = patch_w, copy.patch_b = patch_b, copy.cls_token = cls_token;
  copy.classifier_w = classifier_w, copy.classifier_b = classifier_b;
  copy.layers = layers;
  for_each_slot(nullptr, copy, [&](const std::string& name, const model::Tensor&, int& slot, bool, bool) {
    if (slot != kNone) out.emplace_back(name, slot);
  });
  return out;
}

void ParamSet::zero_grad() {
  for (auto& p : params) std::fill(p.g.begin(), p.g.end(), 0.0f);
}

std::shared_ptr<const model::Model> model_from_params(const model::Model& base, ParamSet&& ps) {
  auto out = std::make_shared<model::Model>(base);  // spec and slot layout; every present slot is replaced
  // The trained weights move into the model, and the gradients and AdamW moments go first, so the peak is not
  // a second fp32 model on top of them.
  for (auto& p : ps.params) {
    std::vector<float>().swap(p.g);
    std::vector<float>().swap(p.m);
    std::vector<float>().swap(p.v);
  }
  std::vector<model::Buffer> bufs(ps.params.size());
  for (size_t i = 0; i < ps.params.size(); ++i)
    bufs[i] = std::make_shared<const std::vector<float>>(std::move(ps.params[i].w));
  auto put = [&](model::Tensor& t, int slot) {
    if (slot != kNone) t = model::Tensor::f32(bufs[size_t(slot)]);
  };
  auto& w = out->w;
  put(w.tok_emb, ps.tok_emb);
  put(w.pos_emb, ps.pos_emb);
  put(w.final_norm_w, ps.final_norm_w);
  put(w.final_norm_b, ps.final_norm_b);
  put(w.lm_head_w, ps.lm_head_w);
  put(w.lm_head_b, ps.lm_head_b);
  put(w.patch_w, ps.patch_w);
  put(w.patch_b, ps.patch_b);
  put(w.cls_token, ps.cls_token);
  put(w.classifier_w, ps.classifier_w);
  put(w.classifier_b, ps.classifier_b);
  // Layers that shared one FFWeights share the new one (the tie is visible as pointer equality, as views make it).
  std::map<const model::FFWeights*, std::shared_ptr<const model::FFWeights>> ffs;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    auto& L = w.layers[l];
    const auto& S = ps.layers[l];
    put(L.norm1_w, S.norm1_w);
    put(L.norm1_b, S.norm1_b);
    put(L.qkv_w, S.qkv_w);
    put(L.qkv_b, S.qkv_b);
    put(L.q_norm_w, S.q_norm_w);
    put(L.k_norm_w, S.k_norm_w);
    put(L.o_w, S.o_w);
    put(L.o_b, S.o_b);
    put(L.norm2_w, S.norm2_w);
    put(L.norm2_b, S.norm2_b);
    auto it = ffs.find(L.ff.get());
    if (it != ffs.end()) {
      L.ff = it->second;
      continue;
    }
    auto ff = std::make_shared<model::FFWeights>(*L.ff);
    put(ff->w_in, S.w_in);
    put(ff->b_in, S.b_in);
    put(ff->w_gate, S.w_gate);
    put(ff->b_gate, S.b_gate);
    put(ff->w_out, S.w_out);
    put(ff->b_out, S.b_out);
    ffs[L.ff.get()] = ff;
    L.ff = ff;
  }
  return out;
}

}  // namespace ffm::train
