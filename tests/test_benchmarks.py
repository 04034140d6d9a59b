"""The benchmarks of issue 14 run with tiny settings on synthetic MNIST and print the numbers they exist for, so they
cannot rot (gpu_check.py --quick runs in tests/test_cuda.py, cifar100_epoch.py in tests/test_cifar100.py). Nothing
here checks a timing: only that each number is printed and that the numbers agree with each other (a ratio is its
two times divided)."""

from __future__ import annotations

import csv
import re

import pytest

from helpers import REPO, TINY_SPACE, run_script_in_process

SMALL = ["n_train=100", "n_val=60", "n_test=40", "c=4", "f=8", "h=8", "batch_size=25"]
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def run_benchmark(script: str, *args: str) -> str:
    """Run benchmarks/<script> in this process (the pytest worker's torch thread, its shared Ray); its stdout."""
    done = run_script_in_process(REPO / "benchmarks" / script, *args)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def ratio_within_rounding(ratio: float, numerator: float, denominator: float, half_unit: float) -> bool:
    """Whether a printed ratio (to 0.01) is the ratio of two printed times (each to `half_unit` either way), whatever
    their size: a time printed as 0 leaves the ratio unbounded above, never a division by zero."""
    low = (numerator - half_unit) / (denominator + half_unit)
    high = (numerator + half_unit) / max(denominator - half_unit, 1e-12)
    return low - 0.005 <= ratio <= high + 0.005


def numbers(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the output:\n{text[-3000:]}"
    return [float(group) for group in match.groups()]


@pytest.fixture
def tiny_space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(TINY_SPACE)
    return path


def test_fit_vs_plain_loop_prints_both_epoch_times_and_their_ratio(fake_mnist_dir):
    out = run_benchmark("fit_vs_plain_loop.py", "--data-dir", str(fake_mnist_dir), "--repeats", "1", *SMALL)
    assert "100 train pairs, batch 25" in out and "median of 3 epochs each" in out
    plain, fitted, ratio = numbers(rf"plain loop: {NUMBER} ms/epoch +fit: {NUMBER} ms/epoch +ratio fit/plain = "
                                   rf"{NUMBER}", out)
    assert plain >= 0 and fitted >= 0
    assert ratio_within_rounding(ratio, fitted, plain, half_unit=0.05)  # ms printed to 0.1


@pytest.mark.slow  # starts Ray
def test_rerun_seeds_prints_each_way_and_its_speed_up(fake_mnist_dir):
    out = run_benchmark("rerun_seeds.py", "--data-dir", str(fake_mnist_dir), "--seeds", "2", "--epochs", "1",
                        "--device", "cpu", *SMALL)
    assert "K=2 seeds x 1 epochs, device cpu" in out
    sequential = None
    for way in ("sequential", r"parallel \(Ray tasks\)", r"batched \(vmap\)"):
        seconds, speed_up = numbers(rf"{way} +{NUMBER} s +speed-up over sequential +{NUMBER}x", out)
        if sequential is None:  # the first way printed is the baseline, whatever its time (0.000 included)
            sequential = seconds
        assert ratio_within_rounding(speed_up, sequential, seconds, half_unit=5e-4), (way, seconds, speed_up)


@pytest.mark.slow
def test_search_overhead_prints_the_search_and_rerun_wall_against_their_ideal(fake_mnist_dir, tiny_space):
    out = run_benchmark("search_overhead.py", "--family", "base", "--space", str(tiny_space), "--data-dir",
                        str(fake_mnist_dir), "--num-samples", "3", "--seeds", "2", "--rerun-epochs", "1")
    trials, epochs = numbers(rf"search overhead: family base, {NUMBER} trials, {NUMBER} trial-epochs, 2 at once", out)
    assert trials == 3 and 3 <= epochs <= 6  # 2-epoch trials, ASHA may stop one after its first
    wall, own, ideal, ratio = numbers(rf"search: wall {NUMBER} s, trials' own time {NUMBER} s, ideal {NUMBER} s, "
                                      rf"wall/ideal = {NUMBER}", out)
    assert 0 < own and ideal == pytest.approx(own / 2, abs=1e-3)  # printed to 0.001 s
    assert ratio_within_rounding(ratio, wall, ideal, half_unit=5e-4)
    wall, own, ideal, ratio = numbers(rf"reruns: 2 seeds x 1 epochs, 2 at once: wall {NUMBER} s, seeds' own time "
                                      rf"{NUMBER} s, ideal {NUMBER} s, wall/ideal = {NUMBER}", out)
    assert 0 < own and ideal == pytest.approx(own / 2, abs=1e-3)  # printed to 0.001 s
    assert ratio_within_rounding(ratio, wall, ideal, half_unit=5e-4)


@pytest.mark.slow
def test_search_efficiency_spends_equal_trial_epochs_and_writes_its_table(fake_mnist_dir, tiny_space, tmp_path):
    out_dir = tmp_path / "out"
    out = run_benchmark("search_efficiency.py", "--families", "base", "--space", f"base={tiny_space}",
                        "--data-dir", str(fake_mnist_dir), "--strategies", "tpe+asha", "random",
                        "mtpe+hyperband+defaults",
                        "--study-seeds", "1", "--budget", "4", "--max-epochs", "2", "--grace-period", "1",
                        "--budget-of", "mtpe+hyperband+defaults=2", "--max-concurrent", "1", "--out", str(out_dir))
    rows = list(csv.DictReader((out_dir / "search_efficiency.csv").open()))
    assert sorted((row["strategy"], row["study_seed"]) for row in rows) == [
        ("mtpe+hyperband+defaults", "0"), ("random", "0"), ("tpe+asha", "0")]
    for row in rows:
        half = row["strategy"] == "mtpe+hyperband+defaults"  # --budget-of: half the budget
        assert int(row["budget"]) == int(row["trial_epochs"]) == (2 if half else 4)  # each spends its own exactly
        curve = [float(row[f"best_val_at_{p}%"]) for p in (25, 50, 75, 100)]
        assert curve == sorted(curve) and 0 < curve[-1] <= 1  # the best so far never drops
        if half:  # after its own budget (50% of --budget) a study keeps its final best
            assert curve[1] == curve[2] == curve[3]
        assert 0 < float(row["chosen_val"]) <= 1 and 0 <= float(row["test"]) <= 1
        if half:  # half of 2 trial-epochs: no 2-epoch trial had finished, nothing to choose
            assert row["chosen_val_at_half"] == row["test_at_half"] == "nan"
        else:  # a 2-epoch trial had finished by half the budget: chosen, and its test metric measured
            assert 0 < float(row["chosen_val_at_half"]) <= float(row["chosen_val"]) <= 1
            assert 0 <= float(row["test_at_half"]) <= 1
        # no early stopping: budget / max epochs trials; ASHA: trials of 1 or 2 epochs until the budget is spent
        assert int(row["trials"]) == 2 if row["strategy"] == "random" else 1 <= int(row["trials"]) <= 4
    table = (out_dir / "search_efficiency.md").read_text()
    assert "| base | tpe+asha | 4 | " in table and "| base | random | 4 | 2.0 | " in table and table in out
    assert "| base | mtpe+hyperband+defaults | 2 | " in table
    assert "test/acc of chosen config" in table and " ± " in table
    # each strategy against random on the same study seed: reached random's final best by 50%?, the test difference
    by = {row["strategy"]: row for row in rows}
    reached = float(by["tpe+asha"]["best_val_at_50%"]) >= float(by["random"]["best_val_at_100%"])
    delta = float(by["tpe+asha"]["test"]) - float(by["random"]["test"])
    assert f"| base | tpe+asha | {int(reached)} of 1 | " in table and f" | {delta:.4f} ± 0.0000 | nan |" in table
    assert "| base | mtpe+hyperband+defaults | " in table.split("Against random search")[1]
    assert (out_dir / "search_efficiency.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_robust_selection_prints_test_accuracy_with_and_without_selection(fake_mnist_dir, tiny_space, tmp_path):
    out = run_benchmark("robust_selection.py", "--family", "base", "--space", str(tiny_space), "--data-dir",
                        str(fake_mnist_dir), "--study-seeds", "1", "--num-samples", "2", "--seeds", "2",
                        "--select-top", "2", "--select-seeds", "1", "--out", str(tmp_path / "studies"))
    assert "| study seed | selection chose | without selection | with selection | paired Δ (pp) |" in out
    without, worst_without, with_, worst_with, delta = numbers(
        rf"\| 1 \| [a-z ]+ \| {NUMBER} / {NUMBER} \| {NUMBER} / {NUMBER} \| ([+-][0-9.]+) \|", out)
    assert worst_without <= without <= 100 and worst_with <= with_ <= 100
    assert delta == pytest.approx(with_ - without, abs=0.02)  # printed to 0.01
    assert (tmp_path / "studies" / "seed1" / "selection.yaml").exists()


@pytest.mark.slow
def test_main_job_times_the_whole_command_with_the_defaults_before_and_now(fake_mnist_dir, tiny_space):
    out = run_benchmark("main_job.py", "--family", "base", "--space", str(tiny_space), "--data-dir",
                        str(fake_mnist_dir), "--num-samples", "2", "--seeds", "2")
    rows = {}
    for arm in ("before", "after"):
        wall, search, selection, reruns, epochs, ratio, mean, std, relative = numbers(
            rf"\| {arm} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} ± "
            rf"{NUMBER} \| {NUMBER} \|", out)
        assert 0 < search <= wall and 0 < reruns <= wall and search + selection + reruns == pytest.approx(wall, abs=2)
        assert 2 <= epochs <= 4 and ratio > 0 and 0 <= mean <= 100  # 2 trials of at most 2 epochs
        rows[arm] = wall, selection, relative
    assert rows["before"][2] == 1.0 and ratio_within_rounding(rows["after"][2], rows["after"][0], rows["before"][0],
                                                               half_unit=0.5)  # walls printed to 1 s
    assert rows["before"][1] > 0 and "before study seed 0:" in out and "after study seed 0:" in out  # it selected
    assert re.search(r"\| after \|.*\| [+-][0-9.]+ \|$", out, re.M)  # the paired difference on the same seeds


def test_image_cache_prints_both_load_times_their_ratio_and_the_ram_beside_the_cache(tmp_path):
    out = run_benchmark("image_cache.py", "--n", "100", "--size", "64", "--folder", str(tmp_path))
    assert "100 RGB PNGs of 64x64" in out
    first, second, ratio = numbers(rf"first load \(decode\): {NUMBER} s +second load \(cache\): {NUMBER} s +ratio "
                                   rf"first/second = {NUMBER}", out)
    assert ratio_within_rounding(ratio, first, second, half_unit=0.0005)  # s printed to 0.001, the ratio to 0.1
    drawn, cache, drawn_ratio = numbers(rf"peak while drawing the splits \+(-?{NUMBER[1:-1]}) MiB, ratio to the "
                                        rf"cache's {NUMBER} MiB = (-?{NUMBER[1:-1]})", out)
    assert cache == pytest.approx(100 * 3 * 64 * 64 / 2 ** 20, abs=0.05)  # uint8 (N, C, S, S), to 0.1 MiB
    assert ratio_within_rounding(drawn_ratio, drawn, cache, half_unit=0.05)
