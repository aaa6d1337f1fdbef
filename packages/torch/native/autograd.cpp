// Autograd (reverse and forward mode) and the thread-local mode switches:
// grad mode, inference mode, autocast.
#include <ATen/autocast_mode.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <algorithm>

#include "common.h"

namespace epg {
namespace {

std::optional<bool> optionalBool(napi_env env, napi_value v, const char* what) {
  if (v == nullptr || isNullish(env, v)) return std::nullopt;
  return getBool(env, v, what);
}

// backward(tensors, gradTensors, retainGraph?, createGraph, inputs?)
napi_value backward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    auto outputs = tensorList(env, a[0], "tensors", false);
    auto grads = a.argc > 1 && !isNullish(env, a[1]) ? tensorList(env, a[1], "gradTensors", true)
                                                      : std::vector<at::Tensor>();
    auto retain = optionalBool(env, a[2], "retainGraph");
    bool create = a.argc > 3 && !isNullish(env, a[3]) ? getBool(env, a[3], "createGraph") : false;
    auto inputs = a.argc > 4 && !isNullish(env, a[4]) ? tensorList(env, a[4], "inputs", false)
                                                       : std::vector<at::Tensor>();
    torch::autograd::backward(outputs, grads, retain, create, inputs);
    return makeUndefined(env);
  });
}

// grad(outputs, inputs, gradOutputs, retainGraph?, createGraph, allowUnused) -> ids (-1: none)
napi_value grad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    auto outputs = tensorList(env, a[0], "outputs", false);
    auto inputs = tensorList(env, a[1], "inputs", false);
    auto gradOutputs = a.argc > 2 && !isNullish(env, a[2]) ? tensorList(env, a[2], "gradOutputs", true)
                                                            : std::vector<at::Tensor>();
    auto retain = optionalBool(env, a[3], "retainGraph");
    bool create = a.argc > 4 && !isNullish(env, a[4]) ? getBool(env, a[4], "createGraph") : false;
    bool allowUnused = a.argc > 5 && !isNullish(env, a[5]) ? getBool(env, a[5], "allowUnused") : false;
    auto result = torch::autograd::grad(outputs, inputs, gradOutputs, retain, create, allowUnused);
    napi_value arr = makeArray(env, result.size());
    for (size_t i = 0; i < result.size(); ++i) setElement(env, arr, i, putTensor(env, result[i]));
    return arr;
  });
}

napi_value getGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    at::Tensor t = getTensor(env, a[0], "tensor");
    return putTensor(env, t.mutable_grad());
  });
}

// setGrad(id, gradId | -1 | null)
napi_value setGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    at::Tensor t = getTensor(env, a[0], "tensor");
    double id;
    if (isNullish(env, a[1]) || (napi_get_value_double(env, a[1], &id) == napi_ok && id == -1)) {
      t.mutable_grad() = at::Tensor();
    } else {
      at::Tensor g = getTensor(env, a[1], "grad");
      // As PyTorch's .grad setter: a gradient must match its tensor.
      if (g.sizes() != t.sizes() || g.scalar_type() != t.scalar_type() || g.device() != t.device())
        throw ArgError("grad: assigned grad has shape/dtype/device " + c10::str(g.sizes(), " ", g.scalar_type(), " ",
                       g.device()) + " but the tensor has " + c10::str(t.sizes(), " ", t.scalar_type(), " ", t.device()));
      t.mutable_grad() = g;
    }
    return makeUndefined(env);
  });
}

napi_value setRequiresGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    at::Tensor t = getTensor(env, a[0], "tensor");
    bool flag = getBool(env, a[1], "requiresGrad");
    if (flag && !t.is_leaf())
      throw ArgError("requiresGrad can only be set on leaf tensors; use detach() first");
    if (flag && !(at::isFloatingType(t.scalar_type()) || at::isComplexType(t.scalar_type())))
      throw ArgError("only floating point tensors can require gradients (dtype is " +
                     std::string(c10::toString(t.scalar_type())) + ")");
    t.set_requires_grad(flag);
    return makeUndefined(env);
  });
}

napi_value retainGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    getTensor(env, a[0], "tensor").retain_grad();
    return makeUndefined(env);
  });
}

napi_value gradFnName(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    const auto& fn = getTensor(env, a[0], "tensor").grad_fn();
    return fn ? makeString(env, fn->name()) : makeNull(env);
  });
}

// setGradEnabled(flag) -> previous flag
napi_value setGradEnabled(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    bool prev = at::GradMode::is_enabled();
    at::GradMode::set_enabled(getBool(env, a[0], "enabled"));
    return makeBool(env, prev);
  });
}

napi_value isGradEnabled(napi_env env, napi_callback_info) {
  return guarded(env, [&] { return makeBool(env, at::GradMode::is_enabled()); });
}

// Inference mode is an RAII guard in C++; JS opens and closes it in strict
// LIFO order (a `finally` in the TS scope helper), so a stack holds the guards.
std::vector<std::unique_ptr<c10::InferenceMode>>& inferenceGuards() {
  // Never destroyed: guards left open at exit are not unwound during static destruction.
  static auto* guards = new std::vector<std::unique_ptr<c10::InferenceMode>>();
  return *guards;
}

napi_value inferenceModeEnter(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    bool enabled = a.argc > 0 && !isNullish(env, a[0]) ? getBool(env, a[0], "enabled") : true;
    inferenceGuards().push_back(std::make_unique<c10::InferenceMode>(enabled));
    return makeInt(env, static_cast<int64_t>(inferenceGuards().size()));
  });
}

napi_value inferenceModeExit(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    int64_t depth = getInt(env, a[0], "depth");
    if (depth != static_cast<int64_t>(inferenceGuards().size()))
      throw ArgError("inference mode scopes must be closed in the order they were opened");
    inferenceGuards().pop_back();
    return makeUndefined(env);
  });
}

napi_value isInferenceMode(napi_env env, napi_callback_info) {
  return guarded(env, [&] { return makeBool(env, c10::InferenceMode::is_enabled()); });
}

at::DeviceType deviceTypeOf(napi_env env, napi_value v) {
  return getDevice(env, v, "deviceType").type();
}

// autocastSet(deviceType, enabled, dtypeCode) -> [prevEnabled, prevDtypeCode]
napi_value autocastSet(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    at::DeviceType dt = deviceTypeOf(env, a[0]);
    bool enabled = getBool(env, a[1], "enabled");
    napi_value prev = makeArray(env, 2);
    setElement(env, prev, 0, makeBool(env, at::autocast::is_autocast_enabled(dt)));
    setElement(env, prev, 1, makeInt(env, static_cast<int64_t>(at::autocast::get_autocast_dtype(dt))));
    if (a.argc > 2 && !isNullish(env, a[2])) {
      at::ScalarType dtype = getScalarType(env, a[2], "dtype");
      if (!at::isFloatingType(dtype))
        throw ArgError(std::string("dtype: autocast needs a floating point dtype, got ") + c10::toString(dtype));
      at::autocast::set_autocast_dtype(dt, dtype);
    }
    at::autocast::set_autocast_enabled(dt, enabled);
    return prev;
  });
}

// autocastNesting(+1 | -1) -> new depth; leaving the outermost scope clears the
// cache of casted weights, as torch.autocast's __exit__ does.
napi_value autocastNesting(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    int64_t delta = getInt(env, a[0], "delta");
    if (delta != 1 && delta != -1) throw ArgError("delta: expected 1 or -1");
    int depth = delta > 0 ? at::autocast::increment_nesting() : at::autocast::decrement_nesting();
    if (depth < 0) {
      at::autocast::increment_nesting();
      throw ArgError("autocast: more scopes closed than opened");
    }
    if (delta < 0 && depth == 0) at::autocast::clear_cache();
    return makeInt(env, depth);
  });
}

napi_value isAutocastEnabled(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    return makeBool(env, at::autocast::is_autocast_enabled(deviceTypeOf(env, a[0])));
  });
}

napi_value enterDualLevel(napi_env env, napi_callback_info) {
  return guarded(env, [&] { return makeInt(env, static_cast<int64_t>(torch::autograd::forward_ad::enter_dual_level())); });
}

napi_value exitDualLevel(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    int64_t level = getInt(env, a[0], "level");
    if (level < 0) throw ArgError("level: expected a level from enterDualLevel()");
    torch::autograd::forward_ad::exit_dual_level(static_cast<uint64_t>(level));
    return makeUndefined(env);
  });
}

}  // namespace

std::vector<Export> autogradExports() {
  return {{"backward", backward},
          {"grad", grad},
          {"getGrad", getGrad},
          {"setGrad", setGrad},
          {"setRequiresGrad", setRequiresGrad},
          {"retainGrad", retainGrad},
          {"gradFnName", gradFnName},
          {"setGradEnabled", setGradEnabled},
          {"isGradEnabled", isGradEnabled},
          {"inferenceModeEnter", inferenceModeEnter},
          {"inferenceModeExit", inferenceModeExit},
          {"isInferenceMode", isInferenceMode},
          {"autocastSet", autocastSet},
          {"autocastNesting", autocastNesting},
          {"isAutocastEnabled", isAutocastEnabled},
          {"enterDualLevel", enterDualLevel},
          {"exitDualLevel", exitDualLevel}};
}

}  // namespace epg
