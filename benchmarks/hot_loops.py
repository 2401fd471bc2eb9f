"""Throughput of the hot loops (teacher training step, attack step, evaluation forward) against this CPU's peak.

Usage::

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/hot_loops.py [--threads 1] [--seconds 3]

Measures, on Fashion-MNIST-shaped inputs (1x28x28) and robustkd's SmallCNN:

* the peak this process reaches: a 2048x2048 float32 matrix product (GFLOP/s);
* one FGSM-RS teacher training step (attack forward+backward, then the training forward+backward and an
  Adam step), as images per second and as GFLOP/s (FLOPs counted from the model's layers: 2 per
  multiply-add, backward = 2x forward), for batch sizes 64, 128 and 256, and with channels-last weights
  and inputs;
* the evaluation forward pass under ``torch.no_grad`` and ``torch.inference_mode``, NCHW and channels-last;
* ``torch.compile`` of the training step's model, where it works on this machine.

Every figure is a median over repeats of about ``--seconds`` each, in one process, so the variants
compare against the baseline measured beside them. GFLOP/s are *effective*: FLOPs of a direct
convolution; oneDNN may compute 3x3 convolutions with fewer (Winograd), so a share above 100% of the
matmul peak is possible.
"""
import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from robustkd import SmallCNN


def flops_per_image(model, shape):
    """Forward FLOPs of one image (2 per multiply-add of the convolutions and linear layers)."""
    total = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total.append(2 * output[0].numel() * k)
        elif isinstance(module, nn.Linear):
            total.append(2 * module.in_features * module.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return sum(total)


def timed(step, seconds, repeats=5):
    """Median seconds per call of ``step`` over ``repeats`` runs of about ``seconds`` each."""
    step()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 4:
        step()
        n += 1
    per_run = max(1, int(n * 4 * seconds / max(seconds, 1e-9) / 4))
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_run):
            step()
        runs.append((time.perf_counter() - start) / per_run)
    return statistics.median(runs)


def peak_gflops(seconds):
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048 ** 3 / timed(lambda: a @ b, seconds) / 1e9


def train_step(model, opt, x, y, eps=0.1):
    """One FGSM-RS teacher step: crafting (forward+backward on the input) and training (forward+backward+Adam)."""
    delta = ((torch.rand_like(x) * 2 - 1) * eps).requires_grad_(True)
    model.eval()
    loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
    grad, = torch.autograd.grad(loss, delta)
    x_adv = (x + (delta.detach() + 1.25 * eps * grad.sign()).clamp(-eps, eps)).clamp(0, 1)
    model.train()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x_adv), y).backward()
    opt.step()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per timed run")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (1, 28, 28)
    fwd = flops_per_image(SmallCNN(input_shape=shape), shape)
    step_flops = 2 * 3 * fwd    # two forward+backward passes per image, backward = 2x forward
    peak = peak_gflops(args.seconds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); SmallCNN forward "
          f"{fwd / 1e6:.2f} MFLOP per image; peak (2048^2 float32 matmul) {peak:.1f} GFLOP/s")

    def model_and_data(batch, channels_last):
        model = SmallCNN(input_shape=shape)
        x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        return model, torch.optim.Adam(model.parameters(), 1e-3), x, y

    print("\nFGSM-RS teacher training step (images/s, effective GFLOP/s, share of the matmul peak)")
    base = None
    for batch in (64, 128, 256):
        for cl in (False, True):
            model, opt, x, y = model_and_data(batch, cl)
            sec = timed(lambda: train_step(model, opt, x, y), args.seconds)
            rate = batch / sec
            base = base or rate
            print(f"  batch {batch:3d} {'channels-last' if cl else 'NCHW         '}  {rate:8.0f} img/s  "
                  f"{rate * step_flops / 1e9:6.1f} GFLOP/s  {rate * step_flops / 1e9 / peak:5.1%}  "
                  f"{rate / base:4.2f}x batch-64 NCHW")
    if not args.no_compile:
        try:
            model, opt, x, y = model_and_data(64, False)
            compiled = torch.compile(model)
            sec = timed(lambda: train_step(compiled, opt, x, y), args.seconds)
            print(f"  batch  64 torch.compile  {64 / sec:8.0f} img/s  {64 / sec / base:4.2f}x batch-64 NCHW")
        except Exception as exc:  # noqa: BLE001 (report why it does not run here)
            print(f"  torch.compile: not available here ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")

    print("\nEvaluation forward pass, batch 500 (images/s)")
    model = SmallCNN(input_shape=shape).eval()
    x = torch.rand(500, *shape)
    rates = {}
    for label, ctx in (("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)):
        for cl in (False, True):
            m = model.to(memory_format=torch.channels_last) if cl else model.to(memory_format=torch.contiguous_format)
            with ctx():
                sec = timed(lambda: m(x), args.seconds)
            rates[(label, cl)] = 500 / sec
    ref = rates[("no_grad", False)]
    for (label, cl), rate in rates.items():
        print(f"  {label:<15} {'channels-last' if cl else 'NCHW         '} {rate:8.0f} img/s  "
              f"{rate * fwd / 1e9:6.1f} GFLOP/s  {rate / ref:4.2f}x no_grad NCHW")


if __name__ == "__main__":
    main()
