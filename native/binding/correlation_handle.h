// How JS CorrelationAccumulator objects (correlation_binding.cc) map to native accumulators, for other binding
// files: a job that feeds an accumulator itself (the forward pass streaming calibration batches into it,
// model_binding.cc) claims it on the main thread, then uses accumulator() from its worker.
#pragma once
#include <napi.h>

#include <memory>

#include "core/correlation.h"

namespace ffm::binding {

// One job's hold on an accumulator. While it lives the accumulator is busy (the JS object's add/finalize/
// setBlockRows throw BUSY, so no two jobs ever touch it at once) and its native state stays alive even if
// the JS object is collected. Capture it in the job's closures: the claim ends when they are destroyed.
class CorrelationClaim {
 public:
  virtual ~CorrelationClaim() = default;
  virtual CorrelationAccumulator& accumulator() const = 0;
};

// Claims the accumulator behind v, the native object of a JS CorrelationAccumulator (lib/native/
// correlation.ts). Throws a JS error: INVALID_ARGUMENT if v is not one, BUSY if a job holds it already.
std::shared_ptr<CorrelationClaim> ClaimCorrelationAccumulator(const Napi::Value& v);

}  // namespace ffm::binding
