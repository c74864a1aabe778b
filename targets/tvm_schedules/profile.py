"""Times one PrimFunc on its own: random inputs shaped from its buffers, TVM's time_evaluator."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np


def random_arguments(func: Any, device: Any, seed: int = 0) -> list[Any]:
    """A tensor per parameter buffer (static shapes only), filled from a seeded generator."""
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(seed)
    arguments = []
    for info in ArgInfo.from_prim_func(func):
        shape = [int(dim) for dim in info.shape]
        dtype = str(info.dtype)
        if dtype.startswith("float"):
            array = rng.standard_normal(shape).astype(dtype)
        else:
            array = rng.integers(0, 8, size=shape).astype(dtype)
        arguments.append(tvm.runtime.tensor(array, device))
    return arguments


def build_function(func: Any, target: Any) -> Any:
    import tvm

    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)


def time_function(func: Any, target: Any, number: int = 10, repeat: int = 3) -> float:
    """Median seconds per call of the compiled function."""
    import tvm

    device = tvm.cpu(0)
    library = build_function(func, target).jit()
    arguments = random_arguments(func, device)
    timer = library.time_evaluator("main", device, number=number, repeat=repeat)
    return float(np.median(timer(*arguments).results))


@dataclass(frozen=True)
class CalledFunction:
    """One call `main` made to a compiled function: its seconds, and the data addresses of its
    tensor arguments in order (inputs first, the output last, as TVM's destination-passing
    calls take them), from which the calls' data flow can be followed."""

    function: str
    seconds: float
    tensors: tuple[int, ...]


@dataclass(frozen=True)
class ProfiledRun:
    """One call of `main`: its seconds end to end (the instrument's cost included, so its
    calls never add up to more) and every compiled function it called, in call order."""

    seconds: float
    calls: tuple[CalledFunction, ...]


def profile_runs(machine: Any, arguments: list[Any], runs: int) -> list[ProfiledRun]:
    """`runs` calls of `main`, each compiled function's call timed where the Relax VM makes it
    (its own builtins, allocation and shape checks, are left out)."""
    import time

    import tvm

    calls: list[CalledFunction] = []
    started: dict[str, tuple[float, tuple[int, ...]]] = {}

    def instrument(_func: Any, symbol: str, before: bool, _result: Any, *args: Any) -> int:
        if symbol.startswith("vm.builtin."):
            return 0  # VMInstrumentReturnKind.NO_OP: run the call as usual
        if before:
            tensors = tuple(a.data_ptr() for a in args if isinstance(a, tvm.runtime.Tensor))
            started[symbol] = (time.perf_counter(), tensors)
        else:
            now = time.perf_counter()
            start, tensors = started.pop(symbol)
            calls.append(CalledFunction(symbol, now - start, tensors))
        return 0

    profiled = []
    machine.set_instrument(instrument)
    try:
        for _ in range(runs):
            start = time.perf_counter()
            machine["main"](*arguments)
            profiled.append(ProfiledRun(time.perf_counter() - start, tuple(calls)))
            calls.clear()
    finally:
        machine.set_instrument(None)
    return profiled


def profile_calls(machine: Any, arguments: list[Any], runs: int = 3) -> dict[str, float]:
    """Mean seconds per run spent in each compiled function `main` calls (see
    `profile_runs`)."""
    spent: dict[str, float] = {}
    for run in profile_runs(machine, arguments, runs):
        for call in run.calls:
            spent[call.function] = spent.get(call.function, 0.0) + call.seconds
    return {symbol: seconds / runs for symbol, seconds in spent.items()}


def leading_op(function: str) -> str:
    """The first op a fused function's name lists: `fused_conv2d7_add6_relu5` -> conv2d,
    `layer_norm1` -> layer_norm, `fast_softmax` -> softmax. Functions are named after their
    Relax ops or, once legalized, their TOPI computes (`transpose` for permute_dims), numbered
    to stay unique."""
    import tvm

    name = function.removeprefix("fused_").removeprefix("fast_")  # TVM's fast_softmax/exp/erf
    ops = {op.rsplit(".", 1)[-1] for op in tvm.ir.Op.list_op_names() if op.startswith("relax.")}
    candidates = [op for op in ops if re.match(rf"{re.escape(op)}(\d+)?(_|$)", name) is not None]
    return max(candidates, key=len, default=re.sub(r"\d+$", "", name.split("_")[0]))
