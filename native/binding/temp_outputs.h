// The temporary outputs (a checkpoint's temp folder, a safetensors temp file) that this environment's writers
// are filling, so that they do not outlive the environment that was writing them.
//
// Why: an output is written under a temporary name and renamed into place; a failed or aborted write removes
// its temp in JS. But worker.terminate() stops a worker's JavaScript wherever it is, and process.exit() ends
// the process, so no JS cleanup runs. A later run's sweep removes only the temps of processes that are gone,
// so a long-lived server whose workers are terminated would pile them up. Held here, they are removed when
// the environment is torn down (~AddonData) and when its process emits 'exit' (addon.cc).
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace ffm::binding {

class TempOutputs {
 public:
  // Holds path (a file or a folder) until release(id); returns id. With restore_to, path is an earlier output
  // moved aside while its replacement goes into place (--overwrite): it is put back there if nothing took its
  // place, and removed only if something did, so that a stop between the two renames never loses it.
  uint32_t hold(std::string path, std::string restore_to = {});
  void release(uint32_t id);
  // Removes every path still held, a folder with what is inside it (links are removed, never followed), or puts
  // it back (restore_to), and forgets them. Errors are ignored: what stays is swept by the next run to that
  // output, as before.
  void remove_held() noexcept;

 private:
  struct Held {
    std::string path;
    std::string restore_to;
  };
  std::mutex mutex_;
  std::map<uint32_t, Held> held_;
  uint32_t next_ = 1;
};

}  // namespace ffm::binding
