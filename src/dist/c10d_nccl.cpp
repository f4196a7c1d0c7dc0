// ProcessGroupNCCL for c10d_shim.cpp, in a translation unit of its own because its header pulls
// in CUDA's (from the torch wheel's nvidia-* packages). Built only when build.rs found them.

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include <cstdint>

c10::intrusive_ptr<c10d::Backend> runner_make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                                   int rank, int world, int64_t timeout_ms) {
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = std::chrono::milliseconds(timeout_ms);
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
}
