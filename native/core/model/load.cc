#include "core/model/load.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "core/error.h"

namespace ffm::model {

size_t stored_size(StoredType t) {
  switch (t) {
    case StoredType::F64:
    case StoredType::I64:
      return 8;
    case StoredType::F32:
    case StoredType::I32:
      return 4;
    case StoredType::F16:
    case StoredType::BF16:
      return 2;
    case StoredType::U8:
    case StoredType::BOOL:
      return 1;
  }
  return 1;
}

bool parse_stored_type(const std::string& n, StoredType* out) {
  static const std::pair<const char*, StoredType> kNames[] = {
      {"F32", StoredType::F32}, {"F16", StoredType::F16}, {"BF16", StoredType::BF16}, {"F64", StoredType::F64},
      {"I32", StoredType::I32}, {"I64", StoredType::I64}, {"U8", StoredType::U8},     {"BOOL", StoredType::BOOL}};
  for (const auto& [name, t] : kNames)
    if (n == name) return *out = t, true;
  return false;
}

namespace {

// One open checkpoint file, closed when the load ends (also on error or cancel).
struct File {
  int fd = -1;
  uint64_t size = 0;
  std::string path;
  File() = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() {
    if (fd >= 0) ::close(fd);
  }
};

void open_file(File& f, const std::string& path) {
  f.path = path;
  // O_NONBLOCK: a FIFO put in place of a shard must fail below, not block the worker (as lib/files.ts does).
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f.fd < 0) throw Error("IO_ERROR", "cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(f.fd, &st) != 0) throw Error("IO_ERROR", "cannot stat " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error("IO_ERROR", path + " is not a regular file");
  f.size = uint64_t(st.st_size);
}

// Fills dst[0..len) from the file at `offset`; a file that ends first is SAFETENSORS_TRUNCATED.
void read_exact(const File& f, uint64_t offset, void* dst, uint64_t len) {
  auto* p = static_cast<char*>(dst);
  while (len > 0) {
    const size_t want = size_t(std::min<uint64_t>(len, uint64_t(1) << 30));
    const ssize_t n = ::pread(f.fd, p, want, off_t(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("IO_ERROR", "reading " + f.path + " failed: " + std::strerror(errno));
    }
    if (n == 0) throw Error("SAFETENSORS_TRUNCATED", f.path + " ended early (was it changed while open?)");
    p += n;
    offset += uint64_t(n);
    len -= uint64_t(n);
  }
}

// Element i of a stored array of T, through double as JS does (Number(bigint) for I64), then float32.
template <class T>
float element(const unsigned char* b, size_t i) {
  T v;
  std::memcpy(&v, b + sizeof(T) * i, sizeof(T));
  return float(double(v));
}

// Stored elements → float32, as lib/safetensors/dtype.ts toF32 converts them. Little-endian host assumed
// (every platform the addon builds for), as the JS reader asserts.
void to_f32(StoredType t, const void* src, float* dst, size_t n) {
  switch (t) {
    case StoredType::F32:
      std::memcpy(dst, src, n * 4);
      return;
    case StoredType::F16:
    case StoredType::BF16:
      half_to_f32(t == StoredType::BF16 ? Half::BF16 : Half::F16, static_cast<const uint16_t*>(src), dst, n);
      return;
    default:
      break;
  }
  const auto* b = static_cast<const unsigned char*>(src);
  for (size_t i = 0; i < n; ++i) {
    switch (t) {
      case StoredType::F64:
        dst[i] = element<double>(b, i);
        break;
      case StoredType::I32:
        dst[i] = element<int32_t>(b, i);
        break;
      case StoredType::I64:
        dst[i] = element<int64_t>(b, i);
        break;
      case StoredType::U8:
        dst[i] = float(b[i]);
        break;
      case StoredType::BOOL:
        dst[i] = b[i] ? 1.0f : 0.0f;
        break;
      default:
        break;
    }
  }
}

// dst[c·rows + r] = src[r·cols + c], in cache-sized tiles.
template <class T>
void transpose(const T* src, T* dst, size_t rows, size_t cols) {
  constexpr size_t kTile = 64;
  for (size_t r0 = 0; r0 < rows; r0 += kTile)
    for (size_t c0 = 0; c0 < cols; c0 += kTile) {
      const size_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      for (size_t r = r0; r < r1; ++r)
        for (size_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
    }
}

// 16-bit storage for `n` elements, uninitialised. Large buffers are 2 MiB-aligned and marked for transparent
// huge pages: the first write of every page (the read itself) then faults once per 2 MiB instead of per
// 4 KiB, which is most of a warm-cache load's time otherwise.
std::shared_ptr<uint16_t[]> alloc_half(size_t n) {
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t bytes = std::max<size_t>(n, 1) * sizeof(uint16_t);
  if (bytes < 2 * kHuge) return std::shared_ptr<uint16_t[]>(new uint16_t[std::max<size_t>(n, 1)]);
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without THP the buffer works the same
#endif
  return std::shared_ptr<uint16_t[]>(static_cast<uint16_t*>(p), [](uint16_t* q) { std::free(q); });
}

// A 16-bit matrix whose bytes in the file are already its storage (one piece, not transposed, 2-byte
// aligned) is mapped rather than read: private, read-only, pre-faulted (MAP_POPULATE), so the load costs page
// table entries over the page cache instead of zeroing fresh memory and copying into it (4x a plain read of
// the file otherwise, measured on a 3.4 GB BF16 checkpoint). The pages stay the page cache's: clean, shared
// with other readers of the file, reclaimable under pressure. Empty on failure (the caller reads instead).
HalfBuffer map_half(const File& f, uint64_t offset, uint64_t length) {
  static const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset / page * page;
  const size_t len = size_t(offset + length - start);
#ifdef MAP_POPULATE
  const int flags = MAP_PRIVATE | MAP_POPULATE;
#else
  const int flags = MAP_PRIVATE;  // Linux only: elsewhere (macOS) the pages fault in as the load reads them
#endif
  void* base = ::mmap(nullptr, len, PROT_READ, flags, f.fd, off_t(start));
  if (base == MAP_FAILED) return {};
  std::shared_ptr<void> owner(base, [len](void* p) { ::munmap(p, len); });
  return HalfBuffer(owner, reinterpret_cast<const uint16_t*>(static_cast<const char*>(base) + (offset - start)));
}

// Where one slot's elements go: float32 or 16-bit storage, `elems` long; or a mapping of the file.
struct Dest {
  std::shared_ptr<std::vector<float>> f32;
  std::shared_ptr<uint16_t[]> h16;
  HalfBuffer mapped;
  bool mappable = false;  // 16-bit, one aligned piece, not transposed
  size_t elems = 0;
  bool half() const { return bool(h16) || bool(mapped) || mappable; }
};

// A unit of pool work: bytes [begin, end) of one piece (whole pieces when transposed), written at element
// `dst_elem` of its slot's storage.
struct Chunk {
  size_t dest;  // index into the destinations
  const LoadPiece* piece;
  uint64_t begin, end;  // byte range within the piece
  size_t dst_elem;
};

constexpr uint64_t kChunkBytes = uint64_t(32) << 20;  // cancel/progress granularity and load balance

std::string piece_key(const std::vector<LoadPiece>& ps) {
  std::string k;
  for (const auto& p : ps)
    k += std::to_string(p.file) + ":" + std::to_string(p.offset) + ":" + std::to_string(p.length) + ":" +
         std::to_string(int(p.dtype)) + ":" + std::to_string(p.rows) + "x" + std::to_string(p.cols) + ";";
  return k;
}

}  // namespace

std::map<std::string, Tensor> load_tensors(JobControl& ctl, const LoadPlan& plan) {
  std::vector<File> files(plan.files.size());
  for (size_t i = 0; i < files.size(); ++i) open_file(files[i], plan.files[i]);

  // Plan the destinations (one per distinct piece list) and check every piece against its file.
  std::vector<Dest> dests;
  std::vector<const LoadSlot*> dest_slot;
  std::map<std::string, size_t> by_key;
  std::vector<size_t> slot_dest(plan.slots.size());
  for (size_t s = 0; s < plan.slots.size(); ++s) {
    const LoadSlot& slot = plan.slots[s];
    const std::string key = piece_key(slot.pieces);
    auto it = by_key.find(key);
    if (it != by_key.end()) {
      slot_dest[s] = it->second;
      continue;
    }
    size_t elems = 0;
    bool all_half = !slot.pieces.empty() && may_stay_half(slot.name);
    const StoredType first = slot.pieces.empty() ? StoredType::F32 : slot.pieces[0].dtype;
    for (const LoadPiece& p : slot.pieces) {
      if (p.file >= files.size()) throw Error("INVALID_ARGUMENT", "tensor \"" + slot.name + "\": file index out of range");
      const File& f = files[p.file];
      if (p.offset > f.size || p.length > f.size - p.offset)
        throw Error("SAFETENSORS_TRUNCATED", f.path + " ends at byte " + std::to_string(f.size) + ", before the data of \"" +
                                                 slot.name + "\" (bytes " + std::to_string(p.offset) + "-" +
                                                 std::to_string(p.offset + p.length) + ")");
      const size_t es = stored_size(p.dtype);
      if (p.length % es != 0)
        throw Error("SAFETENSORS_SIZE_MISMATCH", "tensor \"" + slot.name + "\": " + std::to_string(p.length) +
                                                     " bytes is not a whole number of elements");
      if (p.rows && p.rows * p.cols * es != p.length)
        throw Error("SAFETENSORS_SIZE_MISMATCH", "tensor \"" + slot.name + "\": transpose shape does not match its bytes");
      elems += size_t(p.length / es);
      all_half = all_half && p.dtype == first && (first == StoredType::F16 || first == StoredType::BF16);
    }
    Dest d;
    d.elems = elems;
    d.mappable = plan.map && all_half && slot.pieces.size() == 1 && !slot.pieces[0].rows && slot.pieces[0].offset % 2 == 0;
    try {
      if (!all_half) d.f32 = std::make_shared<std::vector<float>>(elems);
      else if (!d.mappable) d.h16 = alloc_half(elems);  // a mappable one's storage comes from the mapping below
    } catch (const std::bad_alloc&) {
      throw Error("OUT_OF_MEMORY", "not enough memory for tensor \"" + slot.name + "\" (" + std::to_string(elems) + " elements)");
    }
    by_key[key] = dests.size();
    slot_dest[s] = dests.size();
    dests.push_back(std::move(d));
    dest_slot.push_back(&slot);
  }

  uint64_t total = 0;
  for (const LoadSlot* slot : dest_slot)
    for (const LoadPiece& p : slot->pieces) total += p.length;
  std::atomic<uint64_t> done{0};
  std::mutex progress_mu;  // JobControl::progress is not thread-safe; reports are rare (≤ 1 per chunk)
  ctl.progress(0, double(total));
  const auto report = [&](uint64_t bytes) {
    const uint64_t now = done.fetch_add(bytes) + bytes;
    std::lock_guard<std::mutex> lock(progress_mu);
    ctl.progress(double(now), double(total));
  };

  // Mappable matrices first; one whose mapping fails is allocated and read like the rest.
  std::vector<size_t> to_map;
  for (size_t di = 0; di < dests.size(); ++di)
    if (dests[di].mappable) to_map.push_back(di);
  ctl.pool().parallel_for(to_map.size(), 1, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      ctl.check();
      Dest& d = dests[to_map[i]];
      const LoadPiece& p = dest_slot[to_map[i]]->pieces[0];
      d.mapped = map_half(files[p.file], p.offset, p.length);
      if (d.mapped) report(p.length);
    }
  });
  ctl.check();
  for (size_t di : to_map) {
    Dest& d = dests[di];
    d.mappable = false;
    if (d.mapped) continue;
    try {
      d.h16 = alloc_half(d.elems);
    } catch (const std::bad_alloc&) {
      throw Error("OUT_OF_MEMORY", "not enough memory for tensor \"" + dest_slot[di]->name + "\" (" + std::to_string(d.elems) + " elements)");
    }
  }

  // Work list: pieces split into chunks (a transposed piece stays whole: it is reordered as a unit).
  std::vector<Chunk> chunks;
  for (size_t di = 0; di < dests.size(); ++di) {
    if (dests[di].mapped) continue;
    size_t elem = 0;
    for (const LoadPiece& p : dest_slot[di]->pieces) {
      const size_t es = stored_size(p.dtype);
      const uint64_t step = p.rows ? std::max<uint64_t>(p.length, 1) : kChunkBytes / 8 * 8;  // whole elements
      for (uint64_t b = 0; b < p.length; b += step)
        chunks.push_back({di, &p, b, std::min(p.length, b + step), elem + size_t(b / es)});
      elem += size_t(p.length / es);
    }
  }

  ctl.pool().parallel_for(chunks.size(), 1, [&](size_t c0, size_t c1) {
    std::vector<unsigned char> scratch;
    std::vector<float> wide;
    for (size_t ci = c0; ci < c1; ++ci) {
      ctl.check();
      const Chunk& c = chunks[ci];
      const LoadPiece& p = *c.piece;
      const File& f = files[p.file];
      Dest& d = dests[c.dest];
      const uint64_t len = c.end - c.begin;
      const size_t es = stored_size(p.dtype), n = size_t(len / es);
      const bool same = d.half() || p.dtype == StoredType::F32;  // stored bytes are the destination's bytes
      if (!p.rows && same) {
        void* dst = d.half() ? static_cast<void*>(d.h16.get() + c.dst_elem) : static_cast<void*>(d.f32->data() + c.dst_elem);
        read_exact(f, p.offset + c.begin, dst, len);  // straight into place: the common case, no copy
      } else {
        scratch.resize(size_t(len));
        read_exact(f, p.offset + c.begin, scratch.data(), len);
        if (!p.rows) {
          to_f32(p.dtype, scratch.data(), d.f32->data() + c.dst_elem, n);
        } else if (d.half()) {
          std::vector<uint16_t> h(n);
          std::memcpy(h.data(), scratch.data(), len);
          transpose(h.data(), d.h16.get() + c.dst_elem, size_t(p.rows), size_t(p.cols));
        } else {
          wide.resize(n);
          to_f32(p.dtype, scratch.data(), wide.data(), n);
          transpose(wide.data(), d.f32->data() + c.dst_elem, size_t(p.rows), size_t(p.cols));
        }
      }
      report(len);
    }
  });
  ctl.check();

  std::vector<Tensor> made(dests.size());
  for (size_t di = 0; di < dests.size(); ++di) {
    Dest& d = dests[di];
    if (!d.half()) {
      made[di] = Tensor::f32(std::move(d.f32));
      continue;
    }
    const Half type = dest_slot[di]->pieces[0].dtype == StoredType::BF16 ? Half::BF16 : Half::F16;
    made[di] = Tensor::f16(d.mapped ? std::move(d.mapped) : HalfBuffer(std::move(d.h16)), d.elems, type);
  }
  std::map<std::string, Tensor> out;
  for (size_t s = 0; s < plan.slots.size(); ++s) out[plan.slots[s].name] = made[slot_dest[s]];
  return out;
}

}  // namespace ffm::model
