// releaseLostTerminal() -> number: puts /dev/null in place of each standard stream (fd 0–2) whose terminal
// has hung up, and returns how many it replaced.
//
// Why: Node 20 restores each terminal's modes as the process exits and aborts when that fails with EIO
// (node::ResetStdio, nodejs/node#51519; later Node lines allow it). A run whose terminal was closed while it
// went on (its shell ignored SIGHUP, as `trap "" HUP` does) finished its work and then died with SIGABRT.
// Node leaves alone a descriptor that the program reopened onto another file, so the CLI calls this just
// before it exits.
#include <napi.h>

#if defined(__unix__) || defined(__APPLE__)
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>
#endif

#include "binding/registry.h"

namespace ffm::binding {
namespace {

#if defined(__unix__) || defined(__APPLE__)
// Whether fd is a terminal that has hung up: its modes can no longer be read back or set (EIO). SIGTTOU is
// blocked meanwhile, as Node does, so that a run in the background is not stopped by setting them.
bool HungUp(int fd) {
  if (!isatty(fd)) return errno == EIO;
  termios modes;
  if (tcgetattr(fd, &modes) != 0) return errno == EIO;
  sigset_t ttou, before;
  sigemptyset(&ttou);
  sigaddset(&ttou, SIGTTOU);
  pthread_sigmask(SIG_BLOCK, &ttou, &before);
  int err;
  do err = tcsetattr(fd, TCSANOW, &modes);
  while (err == -1 && errno == EINTR);
  const bool lost = err == -1 && errno == EIO;
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  return lost;
}
#endif

Napi::Value ReleaseLostTerminal(const Napi::CallbackInfo& info) {
  int released = 0;
#if defined(__unix__) || defined(__APPLE__)
  for (int fd = 0; fd <= 2; ++fd) {
    if (!HungUp(fd)) continue;
    const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) continue;
    if (dup2(null_fd, fd) == fd) ++released;
    close(null_fd);
  }
#endif
  return Napi::Number::New(info.Env(), released);
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("releaseLostTerminal", Napi::Function::New(env, ReleaseLostTerminal, "releaseLostTerminal"));
}

}  // namespace
FFMERGE_BINDING(Init);
}  // namespace ffm::binding
