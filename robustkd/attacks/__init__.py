"""Named adversarial attacks: a public registry, built-in attacks over advertorch, and running them.

Every attack is built by :func:`get_attack` from a registry name with explicit
parameters (advertorch's own defaults are tuned for MNIST: eps=0.3, 40 steps), and
run through :func:`perturb`, which owns the bookkeeping that advertorch leaves to
the caller: the model is put in eval mode with its parameters frozen for the
duration of the attack (so no attack gradient accumulates in ``.grad`` and none can
leak into a weight update), the caller's input tensor is never modified, and the
model's train/eval mode and ``requires_grad`` flags are restored afterwards.

Attacks must see **logits**: pass the network (a skorch net's ``module_``), never a
function returning probabilities.

Add an attack with :func:`register_attack` (one function that builds it); it then works by
name everywhere a built-in one does.
"""
from . import _advertorch, _autoattack, _fast, _trades  # noqa: F401  (register the built-in attacks)
from ._advertorch import EpsBoundedCW, SeededStartL2PGD, SeededStartLinfPGD
from ._apgd import APGD
from ._autoattack import Cascade
from ._fab import FABTargeted
from ._fast import NoisyFGSM
from ._square import Square
from ._trades import KLPGD
from ._registry import AttackSpec, available_attacks, check_attack_name, check_eps, get_attack, register_attack
from ._run import attack_mode, draws_nothing_shared, perturb, sample_seeds, share_memos

__all__ = ["AttackSpec", "register_attack", "available_attacks", "get_attack", "check_eps", "check_attack_name",
           "perturb", "attack_mode", "sample_seeds", "share_memos", "draws_nothing_shared", "EpsBoundedCW", "SeededStartLinfPGD",
           "SeededStartL2PGD",
           "APGD", "Cascade", "Square", "FABTargeted", "NoisyFGSM", "KLPGD"]
