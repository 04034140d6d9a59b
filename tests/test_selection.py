"""Robust selection's choice and the report's variance split, on numbers whose answers are known."""

import math
import statistics

import pytest

from study.reporting.collect import FamilyResult
from study.reporting.compute import per_study_seed, variance_components
from study.search.selection import SELECTION_SEED_BASE, choose, selection_seeds


def candidate(trial_id: str, search_value: float, values: list[float]) -> dict:
    return {"trial_id": trial_id, "search_value": search_value, "values": values, "mean": statistics.fmean(values)}


def test_the_best_mean_over_selection_seeds_wins_over_the_best_search_score():
    lucky = candidate("lucky", 0.95, [0.88, 0.90, 0.86])  # the search's best, on one lucky draw
    steady = candidate("steady", 0.93, [0.92, 0.93, 0.91])
    winner, reason = choose([lucky, steady], "max")
    assert winner is steady
    assert "steady" in reason and "lucky" in reason and "0.9200" in reason and "0.8800" in reason


def test_the_search_best_stands_when_it_is_also_the_best_mean_and_min_mode_works():
    a, b = candidate("a", 0.10, [0.12, 0.11]), candidate("b", 0.20, [0.30, 0.25])
    winner, reason = choose([b, a], "min")  # an error objective: lower is better
    assert winner is a and "best search score and the best mean" in reason


def test_selection_seeds_never_meet_the_study_seed_or_the_rerun_seeds():
    assert selection_seeds(0, 3) == [SELECTION_SEED_BASE + 1, SELECTION_SEED_BASE + 2, SELECTION_SEED_BASE + 3]
    seeds = {seed for study in range(5) for seed in selection_seeds(study, 3)}
    assert len(seeds) == 15 and min(seeds) > 10_000  # rerun seeds are 1, 2, ... K


def arm(values: dict, study_seeds: list[int], diverged=()) -> FamilyResult:
    finished = {key: {"test/acc": value} for key, value in values.items()}
    return FamilyResult("f", "run", "hash", finished, list(diverged), failure_setting="0.5",
                        study_seeds=study_seeds)


def test_variance_components_match_a_one_way_anova_by_hand():
    # two study seeds, three rerun seeds each: means 0.90 and 0.80, within-variance 0.0001 each
    values = {(0, 1): 0.89, (0, 2): 0.90, (0, 3): 0.91, (1, 2): 0.79, (1, 3): 0.80, (1, 4): 0.81}
    v = variance_components(arm(values, [0, 1]))
    within = 0.0001  # variance of (-0.01, 0, 0.01)
    between = statistics.variance([0.90, 0.80])  # 0.005
    assert v["study_seeds"] == 2
    assert v["seed_std"] == pytest.approx(math.sqrt(within))
    assert v["tuning_std"] == pytest.approx(math.sqrt(between - within / 3))
    assert v["between_std"] == pytest.approx(math.sqrt(between))


def test_tuning_variance_is_clipped_at_zero_when_seed_noise_explains_the_spread():
    values = {(0, 1): 0.7, (0, 2): 0.9, (1, 2): 0.71, (1, 3): 0.91}  # same means up to noise
    assert variance_components(arm(values, [0, 1]))["tuning_std"] == 0.0


def test_with_study_seeds_the_unit_of_comparison_is_a_study_seed_and_diverged_seeds_count():
    values = {(0, 1): 0.9, (0, 2): 0.8, (1, 2): 0.7}
    units = per_study_seed(arm(values, [0, 1], diverged=[(1, 3)]))  # (1, 3) diverged: entered at 0.5
    assert units == {("study", 0): pytest.approx(0.85), ("study", 1): pytest.approx(0.6)}
    plain = per_study_seed(arm({1: 0.9, 2: 0.8}, []))  # no study seeds: its seeds, pairing with no study seed
    assert plain == {("seed", 1): 0.9, ("seed", 2): 0.8}
