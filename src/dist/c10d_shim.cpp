// The C side of runner's data-parallel engine: libtorch's own c10d (TCPStore, ProcessGroupGloo,
// ProcessGroupNCCL), reached from Rust through a handful of C functions (src/dist/c10d.rs).
//
// Compiled by build.rs against the headers of the torch wheel runner links (the same libtorch
// burn-tch uses), with RUNNER_GLOO when gloo's headers were found; NCCL lives in
// c10d_nccl.cpp, built (with RUNNER_NCCL here) when the wheel's CUDA and NCCL headers were.
// Every function runs through `guarded` (../shim_guard.hpp): NULL on success, else what
// libtorch threw as a malloc'd message, so no C++ exception crosses into Rust.
//
// Tensors are `at::Tensor*`, which is what tch's `C_tensor` handles are (torch-sys's
// torch_api.h: `typedef torch::Tensor *tensor`).

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#ifdef RUNNER_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../shim_guard.hpp"

namespace {

using runner_shim::guarded;

std::chrono::milliseconds ms(int64_t value) { return std::chrono::milliseconds(value); }

}  // namespace

#ifdef RUNNER_NCCL
// c10d_nccl.cpp: ProcessGroupNCCL's header pulls in CUDA's, so it is a translation unit of its own.
c10::intrusive_ptr<c10d::Backend> runner_make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                                   int rank, int world, int64_t timeout_ms);
#endif

struct runner_store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct runner_group {
  c10::intrusive_ptr<c10d::Backend> backend;
};

extern "C" {

void runner_c10d_free(void* p) { std::free(p); }

// Whether this build has the collective library `name` ("gloo" or "nccl").
int runner_c10d_has(const char* name) {
  std::string n(name);
#ifdef RUNNER_GLOO
  if (n == "gloo") return 1;
#endif
#ifdef RUNNER_NCCL
  if (n == "nccl") return 1;
#endif
  return 0;
}

// A TCPStore on host:port. The server (rank 0) listens in this process; clients connect,
// retrying until `timeout_ms`.
char* runner_c10d_store_new(const char* host, uint16_t port, int is_server, int world,
                            int64_t timeout_ms, runner_store** out) {
  return guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = false;
    opts.timeout = ms(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    *out = new runner_store{store};
  });
}

void runner_c10d_store_free(runner_store* s) { delete s; }

char* runner_c10d_store_set(runner_store* s, const char* key, const uint8_t* data, size_t len) {
  return guarded([&] {
    std::vector<uint8_t> value(data, data + len);
    s->store->set(std::string(key), value);
  });
}

// Waits up to `timeout_ms` for `key`, then reads it into a malloc'd buffer.
char* runner_c10d_store_get(runner_store* s, const char* key, int64_t timeout_ms, uint8_t** data,
                            size_t* len) {
  return guarded([&] {
    std::string k(key);
    s->store->wait({k}, ms(timeout_ms));
    std::vector<uint8_t> value = s->store->get(k);
    *len = value.size();
    *data = static_cast<uint8_t*>(std::malloc(value.size() > 0 ? value.size() : 1));
    if (*data == nullptr) throw std::bad_alloc();
    if (!value.empty()) std::memcpy(*data, value.data(), value.size());
  });
}

// The process group over `backend` ("gloo" or "nccl"), rendezvousing through the store under
// the prefix "pg/" (runner's own keys live elsewhere in the same store).
char* runner_c10d_group_new(runner_store* s, const char* backend, const char* gloo_ifname,
                            int rank, int world, int64_t timeout_ms, runner_group** out) {
  return guarded([&] {
    std::string name(backend);
    auto store = c10::make_intrusive<c10d::PrefixStore>("pg/", s->store);
#ifdef RUNNER_GLOO
    if (name == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(ms(timeout_ms));
      // The address other ranks reach this one at: the named interface's (torch's
      // GLOO_SOCKET_IFNAME), else this machine's hostname, falling back to the loopback address
      // when the hostname does not resolve.
      if (gloo_ifname != nullptr && gloo_ifname[0] != '\0') {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(gloo_ifname));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
      *out = new runner_group{group};
      return;
    }
#endif
#ifdef RUNNER_NCCL
    if (name == "nccl") {
      *out = new runner_group{runner_make_nccl(store, rank, world, timeout_ms)};
      return;
    }
#endif
    throw std::runtime_error("this runner binary was built without c10d's " + name + " backend");
  });
}

void runner_c10d_group_free(runner_group* g) { delete g; }

// Sums each tensor across ranks, in place. All are started before any is waited for, so the
// library overlaps the transfers of consecutive buckets (as DDP's reducer does).
char* runner_c10d_all_reduce_sum(runner_group* g, at::Tensor** tensors, size_t n) {
  return guarded([&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{*tensors[i]};
      works.push_back(g->backend->allreduce(one, opts));
    }
    for (auto& work : works) {
      work->wait();
    }
  });
}

// Overwrites each tensor with rank `root`'s, in place.
char* runner_c10d_broadcast(runner_group* g, at::Tensor** tensors, size_t n, int root) {
  return guarded([&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{*tensors[i]};
      works.push_back(g->backend->broadcast(one, opts));
    }
    for (auto& work : works) {
      work->wait();
    }
  });
}

}  // extern "C"
