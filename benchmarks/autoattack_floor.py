"""How close robustkd's AutoAttack is to the cost of the model passes it needs: per stage, its wall time against
the same forward and forward-backward passes run bare.

AutoAttack's cost per sample that no attack breaks is fixed by the algorithm: APGD-CE 100 forward-backward
passes, APGD-T 9 x 100, FAB-T 9 x 100 (one backward of a logit difference each, plus forwards), Square 5,000
forwards. This script runs each stage of ``attack="autoattack"`` (one model, one eps, the samples still standing
after the earlier stages, all in one batch, torch's default threads) with the model wrapped so that every call is
recorded (rows, with or without gradient); then it replays exactly those calls on random inputs of the same
shapes, with one backward of the summed logits for every call made with gradient. The ratio ``stage / bare``
is what is left to gain without changing the algorithm (or the model): 1.0 means the attack costs only its
model passes.

    python benchmarks/autoattack_floor.py --models robustkd_out/models --model teacher_pgd --eps 0.1
"""
import argparse
import time

import numpy as np
import torch

from robustkd import load_split
from robustkd.attacks import attack_mode, get_attack, sample_seeds

from bench_autoattack import load_models     # the same reading of a reproduce run's models folder


class Recorder(torch.nn.Module):
    """The model, recording ``(rows, grad_enabled)`` of every call."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.calls = []

    def forward(self, x):
        self.calls.append((len(x), torch.is_grad_enabled() and x.requires_grad))
        return self.module(x)


def replay(module, calls, shape):
    """Run ``calls`` bare: a forward per call, and a backward of the summed logits for calls with gradient."""
    inputs = {}
    start = time.perf_counter()
    for rows, grad in calls:
        if (rows, grad) not in inputs:
            x = torch.rand(rows, *shape).contiguous(memory_format=torch.channels_last)
            inputs[(rows, grad)] = x.requires_grad_(grad)
        x = inputs[(rows, grad)]
        if grad:
            torch.autograd.grad(module(x).sum(), x)
        else:
            with torch.no_grad():
                module(x)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="the models folder of a robustkd reproduce run")
    parser.add_argument("--model", default="teacher_pgd")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--n-test", type=int, default=None, help="the first N test images (default: all)")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _, X, _, y = load_split(args.dataset, args.data_home, seed=0)
    if args.n_test:
        X, y = X[:args.n_test], y[:args.n_test]
    found = load_models(args.models, [args.model])
    if not found:
        parser.error(f"no model {args.model!r} in {args.models}")
    module = found[args.model].module_
    x, y = torch.from_numpy(X).float(), torch.from_numpy(y).long()
    recorder = Recorder(module)
    attack = get_attack("autoattack", recorder, eps=args.eps)
    seeds = sample_seeds(args.seed, np.arange(len(x)))
    print(f"{args.model}, {len(x)} test images of {args.dataset}, eps {args.eps:g}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'stage':8s} {'samples':>7s} {'broken':>6s} {'forward rows':>12s} {'with grad':>10s} "
          f"{'stage s':>8s} {'bare s':>7s} {'ratio':>6s}")
    total = bare_total = 0.0
    module.to(memory_format=torch.channels_last)      # as robustkd's evaluation runs a CNN on the CPU
    with attack_mode(module):
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            alive = module(x).argmax(1) == y
        for stage, member in attack.attacks:
            idx = alive.nonzero().squeeze(1)
            if not len(idx):
                break
            kwargs = {"sample_seeds": seeds[idx.numpy()]} if getattr(member, "accepts_sample_seeds", False) else {}
            recorder.calls = []
            start = time.perf_counter()
            adv = member.perturb(x[idx], y[idx], **kwargs)
            seconds = time.perf_counter() - start
            calls = recorder.calls
            with torch.no_grad():
                broken = module(adv).argmax(1) != y[idx]
            alive[idx[broken]] = False
            bare = replay(module, calls, x.shape[1:])
            total, bare_total = total + seconds, bare_total + bare
            print(f"{stage:8s} {len(idx):7d} {int(broken.sum()):6d} {sum(r for r, _ in calls):12d} "
                  f"{sum(r for r, g in calls if g):10d} {seconds:8.2f} {bare:7.2f} {seconds / bare:6.2f}", flush=True)
    print(f"{'all':8s} {'':7s} {'':6s} {'':12s} {'':10s} {total:8.2f} {bare_total:7.2f} {total / bare_total:6.2f}")
    print(f"robust accuracy {alive.float().mean().item():.4f}")


if __name__ == "__main__":
    main()
