// Each binding file registers its exports here with FFMERGE_BINDING(fn), so adding a native feature is
// adding one file: addon.cc never lists them.
#pragma once
#include <napi.h>

namespace ffm::binding {

using InitFn = void (*)(Napi::Env env, Napi::Object exports);

struct Registrar {
  explicit Registrar(InitFn fn);
};

// Runs every registered InitFn (in registration order, which is unspecified across files).
void InitAll(Napi::Env env, Napi::Object exports);

}  // namespace ffm::binding

#define FFMERGE_BINDING_CAT2(a, b) a##b
#define FFMERGE_BINDING_CAT(a, b) FFMERGE_BINDING_CAT2(a, b)
#define FFMERGE_BINDING(fn) static ::ffm::binding::Registrar FFMERGE_BINDING_CAT(ffm_registrar_, __LINE__)(fn)
