// Layers streamed from disk, for models larger than memory should hold.
//
// A streamed Model keeps its embeddings, final norm and head resident; each layer's tensors stay in the
// safetensors files and are read (core/model/load.h, positioned reads on the pool) when a pass reaches the
// layer. The stream keeps a weak reference to what it read, plus a strong one to the latest layer only: a
// layer lives while some pass (or view) holds it or it is the latest, so a forward pass over L layers holds
// about two layers, and two jobs on one layer at once share one copy. The page cache, not the process, keeps the
// file's bytes warm between passes.
#pragma once
#include <memory>
#include <mutex>
#include <vector>

#include "core/job.h"
#include "core/model/load.h"
#include "core/model/weights.h"

namespace ffm::model {

class LayerStream {
 public:
  // layer_plans[l]: the slots "layers.<l>.*" of the load plan (files included).
  LayerStream(ModelSpec spec, std::vector<LoadPlan> layer_plans);

  // Layer l's stored weights (read now unless some holder still has them). Thread-safe.
  std::shared_ptr<const LayerWeights> acquire(JobControl& ctl, size_t l);
  size_t layers() const { return plans_.size(); }
  // Bytes of layer l's tensors as stored on disk.
  uint64_t stored_bytes(size_t l) const;
  // Elements of layer l's tensors (with or without its FF slots "layers.<l>.ff.*"), from the plan alone.
  size_t stored_elements(size_t l, bool with_ff) const;

 private:
  ModelSpec spec_;
  std::vector<LoadPlan> plans_;
  std::vector<std::unique_ptr<std::mutex>> mu_;  // one per layer: reading one layer never blocks another
  std::vector<std::weak_ptr<const LayerWeights>> held_;
  // The last layer read stays alive until another is read: a layer-major pass (every batch through layer l,
  // then l + 1) reads each layer once, for one extra layer of memory.
  std::mutex recent_mu_;
  std::shared_ptr<const LayerWeights> recent_;
};

// A model whose top-level tensors are `tensors` and whose layers come from `stream` (layer l = stream layer l).
Model build_streamed_model(const ModelSpec& spec, const std::map<std::string, Tensor>& tensors,
                           std::shared_ptr<LayerStream> stream);

// `m` with every layer resident (streamed layers read now, view overrides kept) and no stream: for code that
// needs the whole model's weights at once (training copies them all to fp32 anyway). Returns a copy of the
// pointers when nothing is streamed.
Model resident_copy(JobControl& ctl, const Model& m);

}  // namespace ffm::model
