"""What needs a GPU: fit on CUDA (reproducible, close to CPU), batched reruns equal to separate fits on CUDA.

Skipped where torch.cuda.is_available() is False (CI on CPU). The last test runs everywhere: benchmarks/gpu_check.py
--quick on CPU, so the GPU benchmark script cannot rot. On a GPU machine: bash benchmarks/gpu_check.sh.

Float precision: PyTorch runs cuDNN convolutions in TF32 by default on Ampere and later GPUs (10-bit mantissa), so
CUDA results differ from CPU and between convolution algorithms (a vmapped conv is a grouped conv) by ~1e-3
relative per step. The equality tests turn TF32 off (`exact_fp32`) to test the logic, not the hardware's rounding;
the CPU-vs-CUDA test also checks, with TF32 left at PyTorch's default, that both learn alike.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from helpers import REPO, run_script_in_process, small_config
from study.tasks.digit_pairs import make_pairs
from study.training.batched import fit_batched
from study.training.train import fit

SEEDS = [1, 2, 3]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.is_available() is False "
                                                                      "(run on a GPU machine: benchmarks/gpu_check.sh)")


@pytest.fixture
def exact_fp32():
    """Full fp32 on CUDA (no TF32 in cuDNN convolutions or matmuls) for the test, restored after it."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def without_dropout(family: str, **overrides) -> dict:
    config = small_config(family, epochs=3, **overrides)
    return {**config, **{key: 0.0 for key in ("dropout", "conv_dropout") if key in config}}


def largest_differences(a: list[dict], b: list[dict]) -> dict[str, float]:
    """Per metric name, the largest |a - b| over the epochs (relative for losses)."""
    out = {}
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for name in x:
            diff = abs(x[name] - y[name]) / (abs(x[name]) if name.endswith("loss") and x[name] else 1)
            out[name] = max(out.get(name, 0.0), diff)
    return out


def assert_close(a: list[dict], b: list[dict], *, loss_rel: float, acc_abs: float, what: str) -> None:
    assert len(a) == len(b)
    diffs = largest_differences(a, b)
    bad = {name: d for name, d in diffs.items()
           if d > (loss_rel if name.endswith("loss") else acc_abs if name != "epoch" else 0)}
    assert not bad, f"{what}: largest differences {diffs} (tolerance: losses {loss_rel} relative, metrics {acc_abs})"


REPRODUCED = [("sep_aux", {}), ("conv", {"batchnorm": True}), ("residual", {})]


@needs_cuda
@pytest.mark.parametrize("family, overrides", REPRODUCED)
def test_fit_on_cuda_is_reproducible_with_the_same_seed(family, overrides, small_data):
    """Same config and seed on the same GPU, PyTorch's default settings (dropout on, TF32 convs, cuDNN free to
    pick non-deterministic algorithms): close, not always bitwise equal. Measured on an H200 (torch 2.11, cuDNN
    9.19), 3 epochs, two sessions: sep_aux equal or 8e-8 apart (relative, in a loss), conv up to 6e-6, residual
    up to 3.2e-3 (val/test loss); no accuracy moved. A warning says when the two runs were not bitwise equal."""
    config = small_config(family, epochs=3, **overrides)
    first, second = (fit(config, small_data, evaluate_test=True, device="cuda").history for _ in range(2))
    assert first[-1]["train/loss"] < first[0]["train/loss"] * 1.5  # it trains (tiny data: loss may wobble)
    if first != second:
        warnings.warn(f"{family} on CUDA: two fits with the same seed differ, largest differences "
                      f"{largest_differences(first, second)}")
    assert_close(first, second, loss_rel=2e-2, acc_abs=2 / 40 + 1e-9, what=f"{family}, same seed twice on CUDA")


@needs_cuda
@pytest.mark.parametrize("family, overrides", REPRODUCED)
def test_fit_on_cuda_is_bitwise_reproducible_with_deterministic_cudnn(family, overrides, small_data):
    """With torch.backends.cudnn.deterministic (and no cuDNN benchmarking) the same seed gives the same metrics,
    bit for bit."""
    config = small_config(family, epochs=3, **overrides)
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        first, second = (fit(config, small_data, evaluate_test=True, device="cuda").history for _ in range(2))
    assert first == second, largest_differences(first, second)


@needs_cuda
@pytest.mark.parametrize("family, overrides", [("base", {}), ("sep_aux", {}), ("conv", {"batchnorm": True}),
                                               ("aux", {}), ("aux_reg", {}), ("dense", {"loss": "mse"})])
def test_batched_seeds_match_separate_fits_on_cuda(family, overrides, fake_mnist, exact_fp32):
    """As tests/test_batched.py on CPU: dropout off, each seed of fit_batched equals its own fit, on CUDA."""
    config = without_dropout(family, **overrides)
    datas = [make_pairs(fake_mnist, seed, 100, 60, 40) for seed in SEEDS]
    separate = [fit({**config, "seed": seed}, data, evaluate_test=True, device="cuda")
                for seed, data in zip(SEEDS, datas)]
    batched = fit_batched(config, SEEDS, datas, evaluate_test=True, device="cuda")
    for alone, together in zip(separate, batched):
        assert together.config["seed"] == alone.config["seed"]
        assert len(together.history) == len(alone.history) == 3
        # an accuracy: float rounding may flip an example whose logit is ~0 (test split: 40 pairs)
        assert_close(alone.history, together.history, loss_rel=1e-3, acc_abs=2 / 40 + 1e-9,
                     what=f"{family} seed {alone.config['seed']}, batched vs separate on CUDA")
    assert batched[0].history != batched[1].history  # the seeds really differ


@needs_cuda
@pytest.mark.parametrize("family, overrides", [("sep_aux", {}), ("conv", {"batchnorm": True}), ("dense", {})])
def test_cuda_and_cpu_agree_without_dropout_in_exact_fp32(family, overrides, small_data, exact_fp32):
    """Same initialisation (built on the CPU from the seed), same shuffling, no dropout, full fp32: CUDA and CPU
    differ by float rounding only (different kernels, summation orders) after 3 epochs."""
    config = without_dropout(family, **overrides)
    on_cpu = fit(config, small_data, evaluate_test=True, device="cpu").history
    on_cuda = fit(config, small_data, evaluate_test=True, device="cuda").history
    assert_close(on_cpu, on_cuda, loss_rel=1e-3, acc_abs=2 / 40 + 1e-9, what=f"{family}, CPU vs CUDA")


@needs_cuda
def test_cuda_and_cpu_both_learn_at_default_precision_and_dropout(fake_mnist):
    """With dropout (CUDA and CPU draw different masks) and TF32 at PyTorch's default the runs are not equal, but
    the same config learns the (learnable) synthetic digits on both."""
    data = make_pairs(fake_mnist, 0, 200, 60, 40)
    config = small_config("sep_aux", epochs=6, n_train=200, lr=0.01)
    for device in ("cpu", "cuda"):
        history = fit(config, data, evaluate_test=True, device=device).history
        assert history[-1]["train/loss"] < 0.5 * history[0]["train/loss"], (device, history)
        assert history[-1]["val/digit_acc"] > 0.6, (device, history)


def test_gpu_check_quick_runs_on_cpu():
    """benchmarks/gpu_check.py --quick on CPU prints its three sections (no timing is checked; on CPU the precision
    section compares fp32 with bf16 autocast)."""
    done = run_script_in_process(REPO / "benchmarks" / "gpu_check.py", "--quick", "--device", "cpu", "--families",
                                 "sep_aux", "dense")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for expected in ("(i) fit: seconds per epoch", "sep_aux", "dense", "(ii) reruns: sep_aux", "sequential (2 fits)",
                     "batched (fit_batched, vmap)", "parallel (Ray tasks)", "(iii) precision",
                     "bf16 autocast (per step)", "gpu_check done"):
        assert expected in out, out
