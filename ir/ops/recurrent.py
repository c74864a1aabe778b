"""Recurrent layers: RNN, GRU, LSTM.

Per time step, batch row and direction: the gate projections of X and H (2 * gates * H * (I + H)),
adding the two projections (gates * H), the two biases when B is given (2 * gates * H), and the
cell's elementwise work per hidden unit (activations at the elementwise costs of activation.py):
RNN tanh = 1; GRU 2 sigmoids (8) + reset mul + tanh (2) + blend (4) = 14; LSTM 3 sigmoids (12) +
tanh (1) + cell update (3) + tanh and output mul (2) = 18. Peepholes and clipping are not counted.
"""

from __future__ import annotations

from ir.ops.table import CostUnknown, FlopsRule, NodeShapes, define

# op type -> (gates, FLOPs per hidden unit per step for the cell's elementwise work)
_CELLS: dict[str, tuple[int, int]] = {"RNN": (1, 1), "GRU": (3, 14), "LSTM": (4, 18)}


def _recurrent_rule(gates: int, cell_flops: int) -> FlopsRule:
    def flops(view: NodeShapes) -> int:
        x = view.input_shape(0)  # [S, B, I], or [B, S, I] with layout=1
        weight = view.input_shape(1)  # [directions, gates * H, I]
        if len(x) != 3 or len(weight) != 3:
            raise CostUnknown("recurrent layer inputs must be 3-D")
        steps, batch = (x[1], x[0]) if view.attr_int("layout", 0) else (x[0], x[1])
        hidden = view.attr_int("hidden_size", weight[1] // gates)
        per_step = 2 * gates * hidden * (x[2] + hidden) + gates * hidden + cell_flops * hidden
        if view.has_input(3):
            per_step += 2 * gates * hidden
        return steps * batch * weight[0] * per_step

    return flops


for _op_type, (_gates, _cell) in _CELLS.items():
    define(
        _op_type,
        "recurrent",
        _recurrent_rule(_gates, _cell),
        formula=f"S * B * directions * (2*{_gates}H*(I+H) + {_gates}H + {_cell}H"
        f" [+ {2 * _gates}H with bias])",
    )
