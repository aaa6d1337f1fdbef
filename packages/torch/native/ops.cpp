// One generic operator call through the c10 dispatcher.
//
// JS asks once for an operator handle by (name, overload); the schema is read
// then and each argument's conversion kind is precomputed, so the per-call path
// is: read JS values by kind -> boxed stack -> callBoxed -> results to JS.
// Autograd, autocast and device dispatch are all applied by the dispatcher.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/function_schema.h>

#include <algorithm>
#include <cmath>

#include "common.h"

namespace epg {
namespace {

enum class Kind : uint8_t {
  Tensor,
  Int,
  Float,
  Bool,
  Scalar,
  IntList,
  FloatList,
  BoolList,
  ScalarList,
  TensorList,
  OptTensorList,
  ScalarType,
  Layout,
  MemoryFormat,
  Device,
  Generator,
  String,
  Unsupported,
};

const char* kindName(Kind k) {
  switch (k) {
    case Kind::Tensor: return "Tensor";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Bool: return "bool";
    case Kind::Scalar: return "Scalar";
    case Kind::IntList: return "int[]";
    case Kind::FloatList: return "float[]";
    case Kind::BoolList: return "bool[]";
    case Kind::ScalarList: return "Scalar[]";
    case Kind::TensorList: return "Tensor[]";
    case Kind::OptTensorList: return "Tensor?[]";
    case Kind::ScalarType: return "ScalarType";
    case Kind::Layout: return "Layout";
    case Kind::MemoryFormat: return "MemoryFormat";
    case Kind::Device: return "Device";
    case Kind::Generator: return "Generator";
    case Kind::String: return "str";
    default: return "unsupported";
  }
}

struct ArgSpec {
  std::string name;
  std::string label;  // "aten::add.Tensor argument 'other' (Tensor)" for errors
  Kind kind = Kind::Unsupported;
  bool optional = false;
  int32_t fixedLength = -1;  // int[2] accepts a single int, repeated
  std::optional<c10::IValue> defaultValue;
};

struct OpEntry {
  c10::OperatorHandle handle;
  std::string qualifiedName;
  std::vector<ArgSpec> args;
  std::vector<Kind> returns;
};

std::vector<std::unique_ptr<OpEntry>>& registry() {
  static std::vector<std::unique_ptr<OpEntry>> ops;
  return ops;
}

Kind kindOf(const c10::TypePtr& type) {
  using c10::TypeKind;
  switch (type->kind()) {
    case TypeKind::TensorType: return Kind::Tensor;
    case TypeKind::IntType:
    case TypeKind::SymIntType: return Kind::Int;
    case TypeKind::FloatType:
    case TypeKind::SymFloatType: return Kind::Float;
    case TypeKind::BoolType:
    case TypeKind::SymBoolType: return Kind::Bool;
    case TypeKind::NumberType: return Kind::Scalar;
    case TypeKind::ScalarTypeType: return Kind::ScalarType;
    case TypeKind::LayoutType: return Kind::Layout;
    case TypeKind::MemoryFormatType: return Kind::MemoryFormat;
    case TypeKind::DeviceObjType: return Kind::Device;
    case TypeKind::GeneratorType: return Kind::Generator;
    case TypeKind::StringType: return Kind::String;
    case TypeKind::ListType: {
      const auto& elem = type->castRaw<c10::ListType>()->getElementType();
      if (elem->kind() == TypeKind::OptionalType) {
        auto inner = elem->castRaw<c10::OptionalType>()->getElementType();
        return inner->kind() == TypeKind::TensorType ? Kind::OptTensorList : Kind::Unsupported;
      }
      switch (kindOf(elem)) {
        case Kind::Tensor: return Kind::TensorList;
        case Kind::Int: return Kind::IntList;
        case Kind::Float: return Kind::FloatList;
        case Kind::Bool: return Kind::BoolList;
        case Kind::Scalar: return Kind::ScalarList;
        default: return Kind::Unsupported;
      }
    }
    default: return Kind::Unsupported;
  }
}

ArgSpec specOf(const std::string& opName, const c10::Argument& arg) {
  ArgSpec s;
  s.name = arg.name();
  c10::TypePtr type = arg.real_type();
  if (type->kind() == c10::TypeKind::OptionalType) {
    s.optional = true;
    type = type->castRaw<c10::OptionalType>()->getElementType();
  }
  s.kind = kindOf(type);
  if (arg.N()) s.fixedLength = *arg.N();
  if (arg.default_value()) s.defaultValue = *arg.default_value();
  s.label = opName + " argument '" + s.name + "' (" + kindName(s.kind) + (s.optional ? "?" : "") + ")";
  return s;
}

std::vector<int64_t> intListOf(napi_env env, napi_value v, const ArgSpec& spec) {
  if (typeOf(env, v) == napi_number) {
    int64_t x = getInt(env, v, spec.label.c_str());
    return std::vector<int64_t>(spec.fixedLength > 0 ? spec.fixedLength : 1, x);
  }
  return getIntList(env, v, spec.label.c_str());
}

c10::Scalar scalarOf(napi_env env, napi_value v, const char* label) {
  napi_valuetype t = typeOf(env, v);
  if (t == napi_boolean) return c10::Scalar(getBool(env, v, label));
  if (t != napi_number) throw ArgError(std::string(label) + ": expected a number or boolean");
  double d = getDouble(env, v, label);
  // Integral numbers are int Scalars (as a Python int literal would be), so that
  // integer tensors stay integer under arithmetic with them; -0 stays a float
  // so that its sign survives (1 / -0 = -inf).
  const bool negativeZero = d == 0 && std::signbit(d);
  if (std::isfinite(d) && std::floor(d) == d && !negativeZero && std::fabs(d) < 9007199254740992.0)
    return c10::Scalar(static_cast<int64_t>(d));
  return c10::Scalar(d);
}

c10::IValue convertArg(napi_env env, napi_value v, const ArgSpec& spec) {
  const char* label = spec.label.c_str();
  switch (spec.kind) {
    case Kind::Tensor:
      return getTensor(env, v, label);
    case Kind::Int:
      return getInt(env, v, label);
    case Kind::Float:
      return getDouble(env, v, label);
    case Kind::Bool:
      return getBool(env, v, label);
    case Kind::Scalar:
      return scalarOf(env, v, label);
    case Kind::IntList:
      return intListOf(env, v, spec);
    case Kind::FloatList: {
      uint32_t n = arrayLength(env, v, label);
      std::vector<double> out;
      out.reserve(std::min<uint32_t>(n, 64));
      for (uint32_t i = 0; i < n; ++i) out.push_back(getDouble(env, element(env, v, i), label));
      return out;
    }
    case Kind::BoolList: {
      uint32_t n = arrayLength(env, v, label);
      c10::List<bool> out;
      for (uint32_t i = 0; i < n; ++i) out.push_back(getBool(env, element(env, v, i), label));
      return out;
    }
    case Kind::ScalarList: {
      uint32_t n = arrayLength(env, v, label);
      std::vector<c10::Scalar> out;
      out.reserve(std::min<uint32_t>(n, 64));
      for (uint32_t i = 0; i < n; ++i) out.push_back(scalarOf(env, element(env, v, i), label));
      return out;
    }
    case Kind::TensorList: {
      uint32_t n = arrayLength(env, v, label);
      std::vector<at::Tensor> out;
      out.reserve(std::min<uint32_t>(n, 64));
      for (uint32_t i = 0; i < n; ++i) out.push_back(getTensor(env, element(env, v, i), label));
      return out;
    }
    case Kind::OptTensorList: {
      uint32_t n = nullableListLength(env, v, label);
      c10::List<std::optional<at::Tensor>> out;
      for (uint32_t i = 0; i < n; ++i) {
        napi_value e = element(env, v, i);
        if (isNullish(env, e)) {
          out.push_back(std::nullopt);
        } else {
          out.push_back(getTensor(env, e, label));
        }
      }
      return out;
    }
    // Enums travel as ints and ATen casts them unchecked: out-of-range codes
    // are undefined behaviour there, so they are refused here.
    case Kind::ScalarType:
      return static_cast<int64_t>(getScalarType(env, v, label));
    case Kind::Layout: {
      int64_t code = getInt(env, v, label);
      if (code < 0 || code >= static_cast<int64_t>(at::Layout::NumOptions))
        throw ArgError(std::string(label) + ": unknown layout code " + std::to_string(code));
      return code;
    }
    case Kind::MemoryFormat: {
      int64_t code = getInt(env, v, label);
      if (code < 0 || code >= static_cast<int64_t>(at::MemoryFormat::NumOptions))
        throw ArgError(std::string(label) + ": unknown memory format code " + std::to_string(code));
      return code;
    }
    case Kind::Device:
      return getDevice(env, v, label);
    case Kind::Generator: {
      int64_t id = getInt(env, v, label);
      return generators().get(id, label);
    }
    case Kind::String:
      return getString(env, v, label);
    default:
      throw ArgError(std::string(label) + ": this argument type cannot be passed from JS");
  }
}

napi_value returnValue(napi_env env, const c10::IValue& v) {
  if (v.isTensor()) return putTensor(env, v.toTensor());
  if (v.isNone()) return makeNull(env);
  if (v.isTensorList()) {
    auto list = v.toTensorList();
    napi_value arr = makeArray(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) setElement(env, arr, i, putTensor(env, list.get(i)));
    return arr;
  }
  if (v.isInt()) return makeInt(env, v.toInt());
  if (v.isDouble()) return makeDouble(env, v.toDouble());
  if (v.isBool()) return makeBool(env, v.toBool());
  if (v.isSymInt()) return makeInt(env, v.toSymInt().expect_int());
  if (v.isSymFloat()) return makeDouble(env, v.toSymFloat().expect_float());
  if (v.isIntList()) {
    auto list = v.toIntVector();
    napi_value arr = makeArray(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) setElement(env, arr, i, makeInt(env, list[i]));
    return arr;
  }
  if (v.isList()) {
    auto list = v.toListRef();
    napi_value arr = makeArray(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) setElement(env, arr, i, returnValue(env, list[i]));
    return arr;
  }
  if (v.isString()) return makeString(env, v.toStringRef());
  if (v.isDevice()) return makeString(env, v.toDevice().str());
  throw std::runtime_error("cannot return a value of kind " + v.tagKind() + " to JS");
}

OpEntry& opAt(napi_env env, napi_value v) {
  double id;
  if (v == nullptr || napi_get_value_double(env, v, &id) != napi_ok || !(id >= 0) || std::floor(id) != id ||
      id >= static_cast<double>(registry().size()))
    throw ArgError("not an operator handle; get one with ops.handle(name, overload)");
  return *registry()[static_cast<size_t>(id)];
}

// opHandle(name: string, overload: string) -> number
napi_value opHandle(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    std::string name = getString(env, a[0], "name");
    std::string overload = a.argc > 1 && !isNullish(env, a[1]) ? getString(env, a[1], "overload") : "";
    if (name.find("::") == std::string::npos) name = "aten::" + name;
    auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
    if (!handle)
      throw ArgError("no operator " + name + (overload.empty() ? "" : "." + overload) +
                     " in this libtorch; see https://pytorch.org/docs/stable/torch.html for names, "
                     "and give the overload (e.g. 'Tensor' for add.Tensor)");
    auto entry = std::make_unique<OpEntry>(OpEntry{*handle, name + (overload.empty() ? "" : "." + overload), {}, {}});
    const auto& schema = handle->schema();
    for (const auto& arg : schema.arguments()) entry->args.push_back(specOf(entry->qualifiedName, arg));
    for (const auto& ret : schema.returns()) {
      c10::TypePtr t = ret.real_type();
      if (t->kind() == c10::TypeKind::OptionalType) t = t->castRaw<c10::OptionalType>()->getElementType();
      entry->returns.push_back(kindOf(t));
    }
    registry().push_back(std::move(entry));
    napi_value r;
    NAPI_CHECK(env, napi_create_int32(env, static_cast<int32_t>(registry().size() - 1), &r));
    return r;
  });
}

// opInfo(handle) -> {name, schema, args: [{name, type, optional, hasDefault}], returns: [type]}
napi_value opInfo(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    OpEntry& op = opAt(env, a[0]);
    napi_value o = makeObject(env);
    setProp(env, o, "name", makeString(env, op.qualifiedName));
    std::stringstream ss;
    ss << op.handle.schema();
    setProp(env, o, "schema", makeString(env, ss.str()));
    napi_value args = makeArray(env, op.args.size());
    for (size_t i = 0; i < op.args.size(); ++i) {
      napi_value ao = makeObject(env);
      setProp(env, ao, "name", makeString(env, op.args[i].name));
      setProp(env, ao, "type", makeString(env, kindName(op.args[i].kind)));
      setProp(env, ao, "optional", makeBool(env, op.args[i].optional));
      setProp(env, ao, "hasDefault", makeBool(env, op.args[i].defaultValue.has_value()));
      setElement(env, args, i, ao);
    }
    setProp(env, o, "args", args);
    napi_value rets = makeArray(env, op.returns.size());
    for (size_t i = 0; i < op.returns.size(); ++i) setElement(env, rets, i, makeString(env, kindName(op.returns[i])));
    setProp(env, o, "returns", rets);
    return o;
  });
}

// call(handle, ...args): positional arguments in schema order; undefined takes
// the schema default (or None for an optional argument).
napi_value call(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    Args a(env, info);
    OpEntry& op = opAt(env, a[0]);
    const size_t given = a.argc - 1;
    if (given > op.args.size())
      throw ArgError(op.qualifiedName + ": expected at most " + std::to_string(op.args.size()) +
                     " arguments, got " + std::to_string(given));
    // A local stack, not a reused thread_local one: converting an argument can
    // run JS (an array element getter) that calls back into call().
    torch::jit::Stack stack;
    stack.reserve(op.args.size());
    for (size_t i = 0; i < op.args.size(); ++i) {
      const ArgSpec& spec = op.args[i];
      napi_value v = i < given ? a.argv[i + 1] : nullptr;
      if (v == nullptr || isNullish(env, v)) {
        if (v != nullptr && typeOf(env, v) == napi_null && spec.optional) {
          stack.emplace_back();
        } else if (spec.defaultValue) {
          stack.push_back(*spec.defaultValue);
        } else if (spec.optional) {
          stack.emplace_back();
        } else {
          throw ArgError(spec.label + ": missing required argument");
        }
        continue;
      }
      stack.push_back(convertArg(env, v, spec));
    }
    try {
      op.handle.callBoxed(stack);
    } catch (const c10::Error& e) {
      throw TorchError(op.qualifiedName + ": " + e.what_without_backtrace());
    }
    napi_value result;
    if (stack.empty()) {
      result = makeUndefined(env);
    } else if (stack.size() == 1) {
      result = returnValue(env, stack[0]);
    } else {
      result = makeArray(env, stack.size());
      for (size_t i = 0; i < stack.size(); ++i) setElement(env, result, i, returnValue(env, stack[i]));
    }
    return result;
  });
}

// listOps() -> ["aten::add.Tensor", ...]: every operator schema registered.
napi_value listOps(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto names = c10::Dispatcher::singleton().getAllOpNames();
    napi_value arr = makeArray(env, names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      const auto& n = names[i];
      setElement(env, arr, i, makeString(env, n.name + (n.overload_name.empty() ? "" : "." + n.overload_name)));
    }
    return arr;
  });
}

}  // namespace

std::vector<Export> opsExports() {
  return {{"opHandle", opHandle}, {"opInfo", opInfo}, {"call", call}, {"listOps", listOps}};
}

}  // namespace epg
