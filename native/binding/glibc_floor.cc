// Keeps the prebuilt addon loadable on glibc 2.34 (RHEL 9, Ubuntu 22.04), not only on the 2.36 it is built on.
//
// libstdc++ is linked statically (binding.gyp), and GCC 12's libstdc++.a reaches arc4random (GLIBC_2.36): every
// exception type pulls in the copy-on-write string, whose object file holds std::random_device, which reads
// arc4random. ffmerge never makes a random_device; the one reference alone would refuse the whole binary on an
// older glibc ("version `GLIBC_2.36' not found"). This definition is found first by the linker, so the
// reference binds here, inside the addon, and not to libc. It is hidden: nothing outside the addon sees it.
//
// (The other reference newer than 2.34, libgcc's _dl_find_object at 2.35, is avoided by linking libgcc
// dynamically: libgcc_s.so.1 is already loaded by every Node binary.)
//
// <stdlib.h> is not included: glibc ≥ 2.36 declares arc4random there with default visibility.
//
// glibc only: macOS's and the BSDs' libc have their own arc4random, and no <sys/random.h> getrandom.
// <cstdint> first: it pulls in glibc's <features.h>, which defines __GLIBC__ (the compiler does not).
#include <cstdint>
#if defined(__linux__) && defined(__GLIBC__)

#include <errno.h>
#include <sys/random.h>

extern "C" [[noreturn]] void abort(void) noexcept;

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) noexcept {
  uint32_t v;
  for (;;) {
    // getrandom (glibc 2.25) blocks only until the kernel's pool is first initialised, as arc4random does
    const ssize_t n = getrandom(&v, sizeof v, 0);
    if (n == ssize_t(sizeof v)) return v;
    if (n < 0 && errno != EINTR) abort();  // no entropy source at all: arc4random cannot fail either
  }
}
#endif  // __linux__ && __GLIBC__
