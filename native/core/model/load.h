// Reading a model's tensors straight from safetensors files into native memory.
//
// The JS side parses config.json and the safetensors headers and decides, for every canonical slot
// ("tok_emb", "layers.3.qkv_w", …), where its bytes are: one or more pieces {file, byte offset, length,
// stored dtype}, each optionally transposed (GPT-2's Conv1D [in, out] weights), concatenated in order (q, k, v
// → the fused qkv). load_tensors reads them with positioned reads, parallel on the job's pool, into the
// tensors' final storage: no tensor byte passes through JS. Matrices that may stay 16-bit
// (model::may_stay_half) and are stored F16/BF16 stay so; everything else becomes float32.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/job.h"
#include "core/model/weights.h"

namespace ffm::model {

// safetensors dtypes a weight may be stored in (integers are converted as the JS reader converts them).
enum class StoredType : uint8_t { F32, F16, BF16, F64, I32, I64, U8, BOOL };
size_t stored_size(StoredType t);
// "F32", "BF16", … → type; false for a name that is not one.
bool parse_stored_type(const std::string& name, StoredType* out);

struct LoadPiece {
  size_t file = 0;          // index into LoadPlan::files
  uint64_t offset = 0;      // absolute byte offset of the data in that file
  uint64_t length = 0;      // bytes
  StoredType dtype = StoredType::F32;
  // Transposed while read: stored [rows, cols] becomes [cols, rows]. rows == 0: kept as stored.
  uint64_t rows = 0, cols = 0;
};

struct LoadSlot {
  std::string name;
  std::vector<LoadPiece> pieces;  // concatenated in order
};

struct LoadPlan {
  std::vector<std::string> files;  // absolute paths
  std::vector<LoadSlot> slots;
  // Map 16-bit matrices stored as one aligned piece instead of reading them (see load.cc). The mapping is
  // private and read-only; if the file is truncated while the model is in use, touching the lost pages
  // raises SIGBUS, as with any mmap-based loader (safetensors, llama.cpp): false reads everything.
  bool map = true;
};

// Reads (or maps) every slot (progress: bytes read of the total). Slots whose pieces are identical share one tensor
// (a tied checkpoint loads its ties as one buffer). Throws IO_ERROR (open/read failure, not a regular file),
// SAFETENSORS_TRUNCATED (a file shorter than its header promised, e.g. changed while open),
// SAFETENSORS_SIZE_MISMATCH (a piece that is not a whole number of elements or whose transpose shape does
// not cover it), OUT_OF_MEMORY, or Cancelled.
std::map<std::string, Tensor> load_tensors(JobControl& ctl, const LoadPlan& plan);

}  // namespace ffm::model
