"""Turn a saved ``torch.export`` program back into modules torch-pruning can trace.

An ExportedProgram's ``.module()`` computes with functional aten ops (``aten.conv2d(x, weight, ...)``) on
parameters it holds as plain attributes: torch-pruning finds no Conv2d or Linear there, so it cannot group
channels. This rewrites every conv, linear, batch-norm and layer-norm call on parameters into a call of the
matching ``nn`` module (same tensors, named after the original module), and refuses, in one line, a program
whose parameters are used by anything else.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from robustprune.models import ModelRefError

aten = torch.ops.aten

_CONV = {aten.conv1d.default: nn.Conv1d, aten.conv2d.default: nn.Conv2d, aten.conv3d.default: nn.Conv3d}
_BATCH_NORM = {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}


def _arg(node: fx.Node, index: int, name: str, default: object) -> object:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _tensor(gm: fx.GraphModule, node: object) -> torch.Tensor | None:
    """The parameter or buffer a ``get_attr`` node reads, else None."""
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        return None
    value = gm
    for part in node.target.split("."):
        value = getattr(value, part)
    return value if isinstance(value, torch.Tensor) else None


def _owner(node: fx.Node) -> str:
    """``layer1.0.conv1`` for a node reading ``layer1.0.conv1.weight``."""
    return node.target.rpartition(".")[0] or node.target


def _as_param(tensor: torch.Tensor | None) -> nn.Parameter | None:
    if tensor is None:
        return None
    return tensor if isinstance(tensor, nn.Parameter) else nn.Parameter(tensor.detach(), requires_grad=False)


def _module_for(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module, str] | None:
    """The nn module computing ``node`` with the program's own tensors, and its name; None if not convertible."""
    target = node.target
    if target in _CONV:
        weight, bias = _tensor(gm, node.args[1]), _tensor(gm, _arg(node, 2, "bias", None))
        stride, padding = _arg(node, 3, "stride", 1), _arg(node, 4, "padding", 0)
        dilation, groups = _arg(node, 5, "dilation", 1), _arg(node, 6, "groups", 1)
        out_ch, in_per_group, *kernel = weight.shape
        module = _CONV[target](
            in_per_group * groups, out_ch, tuple(kernel), stride, padding, dilation, groups, bias=bias is not None
        )
        module.weight, module.bias = _as_param(weight), _as_param(bias)
    elif target == aten.linear.default:
        weight, bias = _tensor(gm, node.args[1]), _tensor(gm, _arg(node, 2, "bias", None))
        module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        module.weight, module.bias = _as_param(weight), _as_param(bias)
    elif target in _BATCH_NORM:
        weight, bias, mean, var = (_tensor(gm, a) for a in node.args[1:5])
        if mean is None or var is None:
            return None
        eps = node.args[7] if target == aten.batch_norm.default else node.args[6]
        value = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
        value = value[0] if isinstance(value, tuple | list) else value
        kind = {5: nn.BatchNorm3d, 4: nn.BatchNorm2d}.get(value.dim() if value is not None else 4, nn.BatchNorm1d)
        module = kind(mean.shape[0], eps=eps, affine=weight is not None)
        if weight is not None:
            module.weight, module.bias = _as_param(weight), _as_param(bias)
        module.running_mean, module.running_var = mean, var
    elif target == aten.layer_norm.default:
        shape, weight = node.args[1], _tensor(gm, _arg(node, 2, "weight", None))
        bias, eps = _tensor(gm, _arg(node, 3, "bias", None)), _arg(node, 4, "eps", 1e-5)
        module = nn.LayerNorm(shape, eps=eps, elementwise_affine=weight is not None, bias=bias is not None)
        if weight is None:
            return None
        module.weight, module.bias = _as_param(weight), _as_param(bias)
        return module, _owner(_arg(node, 2, "weight", None))
    else:
        return None
    return module, _owner(node.args[1] if target not in _BATCH_NORM else node.args[3])


_DROPOUTS = ("dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout")


def _training_op(program: torch.export.ExportedProgram) -> str | None:
    """The first op that computes in training mode (a dropout or a batch norm with ``train=True``), or None."""
    for node in program.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        name = node.target._opname
        if name in _DROPOUTS and (node.args[2:3] == (True,) or node.kwargs.get("train") is True):
            return f"{name} is active"
        tracked = len(node.args) > 3 and node.args[3] is not None  # running statistics exist to update
        if name == "batch_norm" and tracked and (node.args[5:6] == (True,) or node.kwargs.get("training") is True):
            return "batch norm updates its statistics"
    return None


def program_to_module(program: torch.export.ExportedProgram, source: str = "the program") -> nn.Module:
    """An ``fx.GraphModule`` computing what ``program`` computes, with nn modules torch-pruning can group.

    Raises ModelRefError (one line) when a parameter is used by an op other than conv, linear, batch or layer
    norm, or when the program was exported for one fixed batch size.
    """
    trained = _training_op(program)
    if trained is not None:
        raise ModelRefError(f"{source} was exported in training mode ({trained}); export it after model.eval()")
    gm = program.module()
    graph = gm.graph
    root = nn.Module()
    converted: set[fx.Node] = set()
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards"):  # input-shape guard: no output
            graph.erase_node(node)
            continue
        if node.op != "call_function":
            continue
        built = _module_for(gm, node)
        if built is None:
            continue
        module, name = built
        if name in dict(root.named_modules()):
            name = f"{name}_{len(converted)}"
        _set_module(root, name, module)
        with graph.inserting_before(node):
            call = graph.call_module(name, (node.args[0],))
        call.meta = dict(node.meta)  # the traced output shape, which later rewrites read
        if node.target == aten._native_batch_norm_legit_no_training.default:  # a tuple; users take item 0
            for user in list(node.users):
                if user.target is not operator.getitem or user.args[1] != 0:
                    raise ModelRefError(f"{source}: a batch norm's statistics are used directly; cannot rebuild it")
                user.replace_all_uses_with(call)
                graph.erase_node(user)
        else:
            node.replace_all_uses_with(call)
        graph.erase_node(node)
        converted.add(call)
    graph.eliminate_dead_code()
    for node in graph.nodes:
        if node.op == "get_attr":
            users = ", ".join(str(u.target) for u in node.users)
            raise ModelRefError(
                f"{source}: parameter {node.target} is used by {users}, which robustprune cannot turn back into a "
                "module (it rebuilds conv, linear, batch and layer norm); give the nn.Module instead "
                "(package.module:factory or torchvision:NAME with --weights)"
            )
        if node.op == "output" and isinstance(node.args[0], tuple | list) and len(node.args[0]) == 1:
            node.args = (node.args[0][0],)
    graph._codegen = fx.graph.CodeGen()  # plain forward(x): no pytree spec of the exported signature
    rebuilt = fx.GraphModule(root, graph)
    rebuilt.recompile()
    return rebuilt.eval()


def _set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent = root
    *parents, leaf = path.split(".")
    for part in parents:
        if not hasattr(parent, part):
            parent.add_module(part, nn.Module())
        parent = getattr(parent, part)
    parent.add_module(leaf, module)
