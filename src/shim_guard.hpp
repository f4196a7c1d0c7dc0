// What runner's C++ shims (src/dist/c10d_shim.cpp, src/kernels/libtorch_ops.cpp) share: no
// C++ exception may cross into Rust, so every exported function runs its body through
// `guarded`, which returns NULL on success or what the body threw as a malloc'd message (the
// Rust side frees it with the shim's `*_free`).

#pragma once

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace runner_shim {

inline char* message(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, text.c_str(), text.size() + 1);
  }
  return out;
}

// Runs `body`; returns NULL, or what it threw. c10::Error's what() carries a C++ backtrace
// after the first line, which is for libtorch developers: what_without_backtrace() is kept.
template <typename F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return message(e.what());
  } catch (...) {
    return message("unknown C++ exception");
  }
}

}  // namespace runner_shim
