// Distributed training over c10d (DESIGN.md, "packages/torch"): a TCPStore
// rendezvous, process groups (Gloo for CPU tensors, NCCL for CUDA tensors when
// compiled in), the collectives as asynchronous work items, c10d's Reducer (the
// bucketed gradient all-reduce of DistributedDataParallel, overlapped with the
// backward pass through autograd hooks), and two differentiable collectives
// (all-reduce and all-gather) for losses and layers that need the global batch.
//
// Everything here is generic plumbing over libtorch's own implementation; the
// policy (environment contract, when to synchronise, module wrapping) lives in
// TypeScript (src/distributed).
#include "common.h"

#ifdef EPG_WITH_DIST
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef EPG_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <limits>

namespace epg {
namespace {

#ifdef EPG_WITH_DIST

using StorePtr = c10::intrusive_ptr<c10d::Store>;
using GroupPtr = c10::intrusive_ptr<c10d::ProcessGroup>;
using WorkPtr = c10::intrusive_ptr<c10d::Work>;
using ReducerPtr = std::shared_ptr<c10d::Reducer>;

// One handle table per kind of c10d object.
template <typename T>
HandleTable<T>& handles() {
  static HandleTable<T> table;
  return table;
}
HandleTable<StorePtr>& stores() { return handles<StorePtr>(); }
HandleTable<GroupPtr>& groups() { return handles<GroupPtr>(); }
HandleTable<WorkPtr>& works() { return handles<WorkPtr>(); }
HandleTable<ReducerPtr>& reducers() { return handles<ReducerPtr>(); }

std::chrono::milliseconds getMillis(napi_env env, napi_value v, const char* what) {
  int64_t ms = getInt(env, v, what);
  if (ms <= 0) throw ArgError(std::string(what) + ": must be a positive number of milliseconds");
  return std::chrono::milliseconds(ms);
}

// A non-empty list of defined tensors.
std::vector<at::Tensor> getTensorList(napi_env env, napi_value v, const char* what) {
  auto out = tensorList(env, v, what, false);
  if (out.empty()) throw ArgError(std::string(what) + ": expected at least one tensor");
  for (const auto& t : out)
    if (!t.defined()) throw ArgError(std::string(what) + ": undefined tensor");
  return out;
}

c10d::ReduceOp getReduceOp(napi_env env, napi_value v) {
  std::string op = getString(env, v, "op");
  if (op == "sum") return c10d::ReduceOp(c10d::ReduceOp::SUM);
  if (op == "avg") return c10d::ReduceOp(c10d::ReduceOp::AVG);
  if (op == "product") return c10d::ReduceOp(c10d::ReduceOp::PRODUCT);
  if (op == "min") return c10d::ReduceOp(c10d::ReduceOp::MIN);
  if (op == "max") return c10d::ReduceOp(c10d::ReduceOp::MAX);
  throw ArgError("op: expected 'sum', 'avg', 'product', 'min' or 'max', got '" + op + "'");
}

// The backend that serves tensors of this device type (Gloo for CPU; NCCL for
// CUDA when the group was created with it).
c10::intrusive_ptr<c10d::Backend> backendFor(const GroupPtr& pg, const at::Tensor& t) {
  auto type = t.device().type();
  // getDeviceTypes, not hasBackendForDeviceType: libtorch before 2.12 lacks the latter.
  const auto served = pg->getDeviceTypes();
  if (std::none_of(served.begin(), served.end(), [&](const c10::Device& d) { return d.type() == type; }))
    throw ArgError(std::string("the process group has no backend for ") + c10::DeviceTypeName(type) +
                   " tensors (create it with a backend that serves this device)");
  return pg->getBackend(type);
}

napi_value putWork(napi_env env, WorkPtr w) { return makeInt(env, works().put(std::move(w))); }

// storeRelease / groupRelease / workRelease / reducerRelease(id): frees a
// handle of that kind (releasing twice is a no-op; `kind` names the argument).
template <typename T, const char* kind>
napi_value releaseHandle(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    handles<T>().release(getInt(env, a[0], kind));
    return makeUndefined(env);
  });
}
constexpr char kStore[] = "store";
constexpr char kGroup[] = "group";
constexpr char kWork[] = "work";
constexpr char kReducer[] = "reducer";

// ---- store ----

// storeCreate(host, port, isServer, worldSize, timeoutMs) -> id. The server
// (rank 0) waits until all worldSize clients have connected, or times out.
napi_value storeCreate(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    std::string host = getString(env, a[0], "host");
    int64_t port = getInt(env, a[1], "port");
    if (port < 0 || port > 65535) throw ArgError("port: expected 0..65535, got " + std::to_string(port));
    bool server = getBool(env, a[2], "isServer");
    int64_t world = getInt(env, a[3], "worldSize");
    if (world < 1) throw ArgError("worldSize: must be at least 1");
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = server;
    o.numWorkers = static_cast<size_t>(world);
    o.waitWorkers = true;  // clients announce themselves; the server waits for all
    o.timeout = getMillis(env, a[4], "timeoutMs");
    StorePtr store = c10::make_intrusive<c10d::TCPStore>(host, o);
    return makeInt(env, stores().put(std::move(store)));
  });
}

napi_value storeSet(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    StorePtr s = stores().get(getInt(env, a[0], "store"), "store");
    std::string key = getString(env, a[1], "key");
    std::string value = getString(env, a[2], "value");
    s->set(key, std::vector<uint8_t>(value.begin(), value.end()));
    return makeUndefined(env);
  });
}

// storeGet(id, key) -> string; waits for the key up to the store's timeout.
napi_value storeGet(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    StorePtr s = stores().get(getInt(env, a[0], "store"), "store");
    auto v = s->get(getString(env, a[1], "key"));
    return makeString(env, std::string(v.begin(), v.end()));
  });
}

napi_value storeAdd(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    StorePtr s = stores().get(getInt(env, a[0], "store"), "store");
    return makeInt(env, s->add(getString(env, a[1], "key"), getInt(env, a[2], "delta")));
  });
}

// ---- process groups ----

c10::intrusive_ptr<c10d::Backend> makeGloo(const StorePtr& store, int rank, int size,
                                           std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  // As torch.distributed: GLOO_SOCKET_IFNAME picks the interfaces; otherwise
  // the address this host's name resolves to (loopback when it does not).
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname && *ifname) {
    std::string names(ifname);
    size_t start = 0;
    while (start <= names.size()) {
      size_t end = names.find(',', start);
      if (end == std::string::npos) end = names.size();
      if (end > start) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(names.substr(start, end - start)));
      start = end + 1;
    }
  } else {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
}

// groupCreate(store, rank, size, backend, timeoutMs, prefix) -> id.
// backend: 'gloo' (CPU tensors; CUDA tensors through host copies) or 'nccl'
// (CUDA tensors over NCCL, CPU tensors over Gloo).
napi_value groupCreate(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    StorePtr base = stores().get(getInt(env, a[0], "store"), "store");
    int64_t rank = getInt(env, a[1], "rank");
    int64_t size = getInt(env, a[2], "size");
    if (size < 1 || rank < 0 || rank >= size)
      throw ArgError("rank " + std::to_string(rank) + " is not in a group of size " + std::to_string(size));
    std::string backend = getString(env, a[3], "backend");
    if (backend != "gloo" && backend != "nccl")
      throw ArgError("backend: expected 'gloo' or 'nccl', got '" + backend + "'");
#ifndef EPG_WITH_NCCL
    if (backend == "nccl")
      throw ArgError("backend 'nccl': this build of @epg/torch has no NCCL (it needs a CUDA build of libtorch and nccl.h)");
#endif
    auto timeout = getMillis(env, a[4], "timeoutMs");
    std::string prefix = getString(env, a[5], "prefix");
    StorePtr store = c10::make_intrusive<c10d::PrefixStore>(prefix, base);
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, static_cast<int>(rank), static_cast<int>(size));
    // Gloo serves CPU tensors with either backend (and CUDA tensors with 'gloo').
    auto gloo = makeGloo(c10::make_intrusive<c10d::PrefixStore>("gloo/", store), rank, size, timeout);
    pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::GLOO, gloo);
    if (backend == "gloo") {
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::GLOO, gloo);
      pg->setDefaultBackend(c10d::ProcessGroup::GLOO);
    }
#ifdef EPG_WITH_NCCL
    if (backend == "nccl") {
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl/", store),
                                                              rank, size, opts);
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::NCCL, nccl);
      pg->setDefaultBackend(c10d::ProcessGroup::NCCL);
    }
#endif
    return makeInt(env, groups().put(pg));
  });
}

// ---- collectives: each returns a work id; wait with workWait ----

napi_value allReduce(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    GroupPtr pg = groups().get(getInt(env, a[0], "group"), "group");
    auto tensors = getTensorList(env, a[1], "tensors");
    c10d::AllreduceOptions o;
    o.reduceOp = getReduceOp(env, a[2]);
    return putWork(env, backendFor(pg, tensors[0])->allreduce(tensors, o));
  });
}

napi_value broadcast(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    GroupPtr pg = groups().get(getInt(env, a[0], "group"), "group");
    auto tensors = getTensorList(env, a[1], "tensors");
    c10d::BroadcastOptions o;
    o.rootRank = getInt(env, a[2], "root");
    if (o.rootRank < 0 || o.rootRank >= pg->getSize())
      throw ArgError("root: no rank " + std::to_string(o.rootRank) + " in a group of size " + std::to_string(pg->getSize()));
    return putWork(env, backendFor(pg, tensors[0])->broadcast(tensors, o));
  });
}

napi_value barrier(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    GroupPtr pg = groups().get(getInt(env, a[0], "group"), "group");
    return putWork(env, pg->getBackend(c10::DeviceType::CPU)->barrier());
  });
}

// workWait(id, timeoutMs?) -> true; throws the collective's error (a peer that
// died, a timeout) with c10d's message.
napi_value workWait(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    WorkPtr w = works().get(getInt(env, a[0], "work"), "work");
    auto timeout = a.argc > 1 && !isNullish(env, a[1]) ? getMillis(env, a[1], "timeoutMs") : std::chrono::milliseconds(0);  // 0: the group's timeout
    return makeBool(env, w->wait(timeout));
  });
}

napi_value workIsCompleted(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    return makeBool(env, works().get(getInt(env, a[0], "work"), "work")->isCompleted());
  });
}

// ---- differentiable collectives ----
// The group travels through autograd's saved data as an IValue (ProcessGroup is
// a registered TorchBind class), so the backward pass keeps it alive.

// y = Σ_ranks x; the gradient of every rank's loss flows back to every rank's
// x: dx = Σ_ranks dy.
struct AllReduceSum : torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const GroupPtr& pg) {
    ctx->saved_data["group"] = pg;
    std::vector<at::Tensor> t{x.clone(at::MemoryFormat::Contiguous)};
    backendFor(pg, t[0])->allreduce(t)->wait();
    return t[0];
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto pg = ctx->saved_data["group"].toCustomClass<c10d::ProcessGroup>();
    std::vector<at::Tensor> t{grads[0].clone(at::MemoryFormat::Contiguous)};
    backendFor(pg, t[0])->allreduce(t)->wait();
    return {t[0], at::Tensor()};
  }
};

// y = cat(x_0, …, x_{W−1}) along dim 0; dx_r = (Σ_ranks dy)[rows of rank r].
// Every rank must pass the same shape. Under no-grad this is the plain gather
// (ProcessGroup.allGather).
struct AllGatherCat : torch::autograd::Function<AllGatherCat> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const GroupPtr& pg) {
    ctx->saved_data["group"] = pg;
    ctx->saved_data["rows"] = x.size(0);
    int world = pg->getSize();
    auto shape = x.sizes().vec();
    shape[0] *= world;
    at::Tensor out = at::empty(shape, x.options());
    std::vector<std::vector<at::Tensor>> outs{out.chunk(world, 0)};
    std::vector<at::Tensor> in{x.contiguous()};
    backendFor(pg, x)->allgather(outs, in)->wait();
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto pg = ctx->saved_data["group"].toCustomClass<c10d::ProcessGroup>();
    int64_t rows = ctx->saved_data["rows"].toInt();
    std::vector<at::Tensor> t{grads[0].clone(at::MemoryFormat::Contiguous)};
    backendFor(pg, t[0])->allreduce(t)->wait();
    return {t[0].narrow(0, pg->getRank() * rows, rows).clone(), at::Tensor()};
  }
};

napi_value allReduceWithGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    GroupPtr pg = groups().get(getInt(env, a[0], "group"), "group");
    at::Tensor x = getTensor(env, a[1], "input");
    return putTensor(env, AllReduceSum::apply(x, pg));
  });
}

napi_value allGatherWithGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    GroupPtr pg = groups().get(getInt(env, a[0], "group"), "group");
    at::Tensor x = getTensor(env, a[1], "input");
    if (x.dim() == 0) throw ArgError("allGatherWithGrad: expected a tensor with a batch dimension, got a scalar");
    return putTensor(env, AllGatherCat::apply(x, pg));
  });
}

// ---- DistributedDataParallel's reducer ----

// reducerCreate(group, params, bucketCapBytes, firstBucketCapBytes, findUnused,
// gradientAsBucketView) -> id. As torch.nn.parallel.DistributedDataParallel:
// one bucket at first, rebuilt after the first backward pass in the order the
// gradients became ready (rebuildBuckets, called at the start of each step).
napi_value reducerCreate(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    GroupPtr pg = groups().get(getInt(env, a[0], "group"), "group");
    auto params = getTensorList(env, a[1], "params");
    int64_t cap = getInt(env, a[2], "bucketCapBytes");
    int64_t firstCap = getInt(env, a[3], "firstBucketCapBytes");
    if (cap <= 0 || firstCap <= 0) throw ArgError("bucket capacities must be positive");
    bool findUnused = getBool(env, a[4], "findUnusedParameters");
    bool asView = getBool(env, a[5], "gradientAsBucketView");
    for (const auto& p : params)
      if (!p.requires_grad() || !p.is_leaf())
        throw ArgError("reducerCreate: every parameter must be a leaf that requires grad");
    std::vector<size_t> limits{findUnused ? static_cast<size_t>(firstCap) : static_cast<size_t>(std::numeric_limits<int64_t>::max())};
    if (findUnused && firstCap < cap) limits.push_back(static_cast<size_t>(cap));
    std::vector<bool> sparse(params.size(), false);
    auto [buckets, perBucketLimits] = c10d::compute_bucket_assignment_by_size(params, limits, sparse);
    // Reversed: gradients arrive roughly in the reverse of definition order.
    std::reverse(buckets.begin(), buckets.end());
    std::unordered_map<size_t, std::string> names;
    auto reducer = std::make_shared<c10d::Reducer>(params, buckets, pg, sparse, cap, findUnused, asView, names,
                                                   firstCap, false, false, std::vector<int64_t>{});
    return makeInt(env, reducers().put(std::move(reducer)));
  });
}

// reducerPrepareForward(id): the start of a step whose gradients are to be
// synchronised; rebuilds the buckets once after the first step (a collective).
napi_value reducerPrepareForward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    ReducerPtr r = reducers().get(getInt(env, a[0], "reducer"), "reducer");
    r->prepare_for_forward();
    r->rebuild_buckets();
    return makeUndefined(env);
  });
}

// reducerPrepareBackward(id, outputs): arms the autograd hooks for the next
// backward pass; with findUnusedParameters the outputs' graph is searched for
// parameters that will get no gradient.
napi_value reducerPrepareBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    ReducerPtr r = reducers().get(getInt(env, a[0], "reducer"), "reducer");
    r->prepare_for_backward(tensorList(env, a[1], "outputs", false));
    return makeUndefined(env);
  });
}

#endif  // EPG_WITH_DIST

napi_value distInfo(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    napi_value o = makeObject(env);
#ifdef EPG_WITH_DIST
    setProp(env, o, "available", makeBool(env, true));
#else
    setProp(env, o, "available", makeBool(env, false));
#endif
#ifdef EPG_WITH_NCCL
    setProp(env, o, "nccl", makeBool(env, true));
#else
    setProp(env, o, "nccl", makeBool(env, false));
#endif
    return o;
  });
}

}  // namespace

std::vector<Export> distExports() {
  return {
      {"distInfo", distInfo},
#ifdef EPG_WITH_DIST
      {"storeCreate", storeCreate},
      {"storeSet", storeSet},
      {"storeGet", storeGet},
      {"storeAdd", storeAdd},
      {"storeRelease", releaseHandle<StorePtr, kStore>},
      {"groupCreate", groupCreate},
      {"groupRelease", releaseHandle<GroupPtr, kGroup>},
      {"allReduce", allReduce},
      {"broadcast", broadcast},
      {"barrier", barrier},
      {"workWait", workWait},
      {"workIsCompleted", workIsCompleted},
      {"workRelease", releaseHandle<WorkPtr, kWork>},
      {"allReduceWithGrad", allReduceWithGrad},
      {"allGatherWithGrad", allGatherWithGrad},
      {"reducerCreate", reducerCreate},
      {"reducerPrepareForward", reducerPrepareForward},
      {"reducerPrepareBackward", reducerPrepareBackward},
      {"reducerRelease", releaseHandle<ReducerPtr, kReducer>},
#endif
  };
}

}  // namespace epg
