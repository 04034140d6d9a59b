"""study.reporting.stats comparisons checked against independent computations: numpy by hand, exact enumeration,
textbook values. Synthetic numbers only; no Ray, no MLflow."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from study.infra.errors import StudyError
from study.reporting.stats import (COMPARISON_FIELDS, MAX_SEEDS, compare, compare_all, comparisons_markdown,
                                   describe, detectable_difference, failure_rule, holm, paired_t_power, resolution,
                                   seeds_to_resolve, with_failures)

pytestmark = pytest.mark.filterwarnings("error")  # degenerate data must give NaN with a reason, not warnings


def correlated(n: int = 10, effect: float = 0.01, seed: int = 0) -> tuple[dict, dict]:
    """Two families whose seeds share a large per-seed effect (same split, same init) and differ by `effect`."""
    rng = np.random.default_rng(seed)
    per_seed = rng.normal(0.9, 0.03, n)
    a = per_seed + effect + rng.normal(0, 0.004, n)
    b = per_seed + rng.normal(0, 0.004, n)
    return dict(enumerate(a)), dict(enumerate(b))


def shifted(values: dict, by: int = 100) -> dict:
    """The same numbers under other seeds: forces an unpaired comparison."""
    return {seed + by: value for seed, value in values.items()}


def hand_holm(p: list[float]) -> list[float]:
    order = np.argsort(p)
    m = len(p)
    scaled = np.minimum(1, np.maximum.accumulate([(m - rank) * p[i] for rank, i in enumerate(order)]))
    out = np.empty(m)
    out[order] = scaled
    return list(out)


# --- pairing ---

def test_paired_when_the_seeds_match_and_unpaired_when_they_do_not():
    a, b = correlated()
    row = compare(a, b, "a", "b")
    assert row["pairing"] == "paired" and row["n_pairs"] == 10 and "same 10 seeds" in row["pairing_reason"]
    assert row["t_test"] == "paired t" and row["rank_test"] == "Wilcoxon signed-rank"
    assert row["effect_size_kind"] == "cohen_dz"

    del b[3]
    row = compare(a, b, "a", "b")
    assert row["pairing"] == "unpaired" and row["n_pairs"] == 0 and (row["n_a"], row["n_b"]) == (10, 9)
    assert "only in A: [3]" in row["pairing_reason"]  # compared on all seeds, none dropped to pair the rest
    assert row["t_test"] == "Welch t" and row["rank_test"].startswith("Mann-Whitney U")
    assert row["effect_size_kind"] == "hedges_g"

    row = compare({1: 0.9}, {1: 0.8})
    assert row["pairing"] == "unpaired" and "too few to pair" in row["pairing_reason"]


def test_rows_have_every_documented_field():
    a, b = correlated()
    row = compare(a, b)
    assert list(row) == [key for key in COMPARISON_FIELDS if not key.endswith("_holm")]
    assert list(compare_all({"a": a, "b": b})[0]) == list(COMPARISON_FIELDS)  # Holm p-values beside raw ones


# --- paired statistics against hand computations ---

def test_paired_t_matches_the_hand_formula_and_is_far_smaller_than_welch_on_correlated_seeds():
    a, b = correlated()
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    d = x - y
    n = len(d)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(n))
    p_hand = 2 * stats.t.sf(abs(t), n - 1)
    paired = compare(a, b)
    assert paired["diff"] == pytest.approx(d.mean())
    assert paired["p_t"] == pytest.approx(p_hand, rel=1e-9)

    # Welch by hand: Welch-Satterthwaite df.
    va, vb = x.var(ddof=1) / n, y.var(ddof=1) / n
    df = (va + vb) ** 2 / (va ** 2 / (n - 1) + vb ** 2 / (n - 1))
    p_welch = 2 * stats.t.sf(abs(d.mean() / math.sqrt(va + vb)), df)
    unpaired = compare(a, shifted(b))
    assert unpaired["pairing"] == "unpaired"
    assert unpaired["p_t"] == pytest.approx(p_welch, rel=1e-9)
    # The seed effect (sd 0.03) swamps the 0.01 difference unpaired; pairing cancels it.
    assert paired["p_t"] < 1e-3 and unpaired["p_t"] > 0.1
    assert paired["p_t"] < unpaired["p_t"] / 1000


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_t_intervals_match_the_hand_formulas(confidence):
    a, b = correlated()
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    d, n = x - y, len(x)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
    row = compare(a, b, confidence=confidence)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)
    assert row["confidence"] == confidence

    va, vb = x.var(ddof=1) / n, y.var(ddof=1) / n
    df = (va + vb) ** 2 / (va ** 2 / (n - 1) + vb ** 2 / (n - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(va + vb)
    row = compare(a, shifted(b), confidence=confidence)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)


def test_cohens_dz_by_hand_and_probability_of_improvement_with_ties():
    a = {1: 0.90, 2: 0.85, 3: 0.80, 4: 0.70, 5: 0.75}
    b = {1: 0.85, 2: 0.85, 3: 0.70, 4: 0.75, 5: 0.60}
    d = np.array([a[s] - b[s] for s in a])  # +0.05, 0, +0.10, -0.05, +0.15
    row = compare(a, b)
    assert row["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert row["prob_a_beats_b"] == pytest.approx((3 + 0.5) / 5)  # three wins, one tie counted half, one loss


def test_wilcoxon_matches_exact_textbook_values():
    # All five differences positive: the most extreme of 2^5 sign patterns on either side, p = 2/32.
    row = compare({s: 1.0 + s for s in range(5)}, {s: 0.0 for s in range(5)})
    assert row["p_wilcoxon"] == pytest.approx(2 / 32)
    assert "cannot reach p < 0.0625" in row["notes"]  # and the row says so

    # n = 8, negative differences with ranks 1 and 2 (W- = 3): sign subsets of ranks 1..8 with sum <= 3 are
    # {}, {1}, {2}, {3}, {1, 2}, so p = 2 * 5 / 256.
    d = [-0.1, -0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    row = compare({s: 1 + v for s, v in enumerate(d)}, {s: 1.0 for s in range(8)})
    assert row["p_wilcoxon"] == pytest.approx(10 / 256)


def test_wilcoxon_with_tied_differences_equals_exhaustive_sign_flipping():
    d = np.array([0.02, 0.02, -0.01, 0.03, 0.02, 0.01, 0.04, -0.02])  # tied |d|: exact tables do not apply
    ranks = stats.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    centre = ranks.sum() / 2
    flips = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(d))]
    p_hand = np.mean([abs(w - centre) >= abs(observed - centre) - 1e-12 for w in flips])
    row = compare({s: 0.9 + v for s, v in enumerate(d)}, {s: 0.9 for s in range(len(d))})
    assert row["p_wilcoxon"] == pytest.approx(p_hand)


# --- unpaired statistics ---

def test_hedges_g_and_common_language_effect_size_by_hand():
    a = {0: 0.91, 1: 0.93, 2: 0.90, 3: 0.95, 4: 0.92, 5: 0.90}
    b = {10: 0.90, 11: 0.88, 12: 0.90, 13: 0.91, 14: 0.86}
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    df = len(x) + len(y) - 2
    pooled = math.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / df)
    j = math.exp(math.lgamma(df / 2) - math.lgamma((df - 1) / 2)) / math.sqrt(df / 2)
    row = compare(a, b)
    assert row["effect_size"] == pytest.approx(j * (x.mean() - y.mean()) / pooled)
    assert j == pytest.approx(1 - 3 / (4 * df - 1), abs=2e-3)  # Hedges' usual approximation of J
    wins = sum((u > v) + 0.5 * (u == v) for u in x for v in y)  # 0.90 ties count half
    assert row["prob_a_beats_b"] == pytest.approx(wins / (len(x) * len(y)))


def test_mann_whitney_exact_without_ties_and_permutation_with_ties():
    # No ties, 3 vs 3, A entirely above B: 1 of C(6,3) = 20 splits as extreme per side, p = 2/20.
    row = compare({0: 0.94, 1: 0.95, 2: 0.96}, {10: 0.91, 11: 0.92, 12: 0.93})
    assert row["p_wilcoxon"] == pytest.approx(0.1) and row["prob_a_beats_b"] == 1.0

    # Ties: the exhaustive permutation distribution of U (all C(7,3) = 35 splits fit in the resamples).
    x, y = [0.90, 0.92, 0.92], [0.88, 0.90, 0.90, 0.91]
    pooled = np.array(x + y)

    def u(first):
        ranks = stats.rankdata(pooled)
        return ranks[list(first)].sum() - 3 * 4 / 2

    observed = u(range(3))
    splits = [u(idx) for idx in itertools.combinations(range(7), 3)]
    # Two-sided as scipy's permutation tests define it: twice the smaller tail (the null of U is not
    # symmetric with ties), capped at 1.
    splits = np.array(splits)
    p_hand = min(1.0, 2 * min(np.mean(splits >= observed - 1e-12), np.mean(splits <= observed + 1e-12)))
    row = compare(dict(enumerate(x)), shifted(dict(enumerate(y))))
    assert row["rank_test"] == "Mann-Whitney U (permutation, ties)"
    assert row["p_wilcoxon"] == pytest.approx(p_hand)


# --- bootstrap ---

def test_bootstrap_interval_is_close_to_the_t_interval_on_normal_data_and_reproducible():
    rng = np.random.default_rng(7)
    per_seed = rng.normal(0.9, 0.03, 30)
    a = dict(enumerate(per_seed + 0.01 + rng.normal(0, 0.01, 30)))
    b = dict(enumerate(per_seed + rng.normal(0, 0.01, 30)))
    for x, y in ((a, b), (a, shifted(b))):  # paired, then unpaired
        row = compare(x, y)
        assert row["boot_ci_low"] < row["diff"] < row["boot_ci_high"] and row["notes"] == ""
        half = (row["ci_high"] - row["ci_low"]) / 2
        # Normal data, n = 30: percentile-type intervals are a little narrower than t's (z vs t quantile).
        assert row["boot_ci_low"] == pytest.approx(row["ci_low"], abs=0.2 * half)
        assert row["boot_ci_high"] == pytest.approx(row["ci_high"], abs=0.2 * half)
        again = compare(x, y)
        assert (again["boot_ci_low"], again["boot_ci_high"]) == (row["boot_ci_low"], row["boot_ci_high"])
        other = compare(x, y, seed=1)
        assert (other["boot_ci_low"], other["boot_ci_high"]) != (row["boot_ci_low"], row["boot_ci_high"])


def test_bootstrap_from_few_seeds_is_flagged():
    row = compare({1: 0.9, 2: 0.8, 3: 0.85}, {1: 0.85, 2: 0.82, 3: 0.7})
    assert not math.isnan(row["boot_ci_low"]) and "fewer than 10 seeds" in row["notes"]


def test_paired_bootstrap_resamples_seeds_not_families():
    a, b = correlated()
    paired, unpaired = compare(a, b), compare(a, shifted(b))
    # The shared seed effect cancels in the paired bootstrap, not in the independent one.
    assert (paired["boot_ci_high"] - paired["boot_ci_low"]) < (unpaired["boot_ci_high"] - unpaired["boot_ci_low"]) / 5


# --- every pair, Holm ---

def test_holm_matches_a_hand_example_and_leaves_untested_pairs_out():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01, math.nan, 0.03]) == pytest.approx([0.02, math.nan, 0.03], nan_ok=True)
    assert holm([]) == []


def test_compare_all_compares_every_pair_oriented_by_mean_with_holm_over_all_pairs():
    rng = np.random.default_rng(3)
    per_seed = rng.normal(0.9, 0.02, 10)
    offsets = {"w": 0.0, "x": 0.012, "y": 0.004, "z": 0.008}
    results = {name: dict(enumerate(per_seed + off + rng.normal(0, 0.005, 10))) for name, off in offsets.items()}
    rows = compare_all(results)
    k = len(results)
    assert len(rows) == k * (k - 1) // 2
    pairs = [frozenset((r["family_a"], r["family_b"])) for r in rows]
    assert set(pairs) == {frozenset(p) for p in itertools.combinations(results, 2)}  # every pair, once
    assert pairs == [frozenset(p) for p in itertools.combinations(results, 2)]  # in the given family order
    for r in rows:
        assert r["pairing"] == "paired"
        means = {name: np.mean(list(results[name].values())) for name in (r["family_a"], r["family_b"])}
        assert means[r["family_a"]] >= means[r["family_b"]] and r["diff"] >= 0  # A is the higher mean
        assert r["diff"] == pytest.approx(means[r["family_a"]] - means[r["family_b"]])
        assert r["prob_a_beats_b"] >= 0.5 or r["diff"] < 0.003
    for raw, adjusted in (("p_t", "p_t_holm"), ("p_wilcoxon", "p_wilcoxon_holm")):
        p = [r[raw] for r in rows]
        q = [r[adjusted] for r in rows]
        assert q == pytest.approx(hand_holm(p))
        assert all(qi >= pi for pi, qi in zip(p, q))
        by_raw = sorted(range(len(p)), key=lambda i: p[i])
        assert all(q[i] <= q[j] for i, j in zip(by_raw, by_raw[1:]))  # monotone in the raw p-values


def test_compare_all_orients_a_lower_first_family_second():
    rows = compare_all({"low": {1: 0.80, 2: 0.82, 3: 0.81}, "high": {1: 0.90, 2: 0.91, 3: 0.93}})
    assert (rows[0]["family_a"], rows[0]["family_b"]) == ("high", "low") and rows[0]["diff"] > 0


# --- failures ---

def test_failed_seeds_enter_at_the_failure_value_and_are_never_dropped():
    finished = {0: 0.9, 1: 0.92, 3: 0.94}
    merged = with_failures(finished, {2, 4}, 0.5)
    assert merged == {0: 0.9, 1: 0.92, 2: 0.5, 3: 0.94, 4: 0.5}
    assert describe(merged.values())["mean"] == pytest.approx((0.9 + 0.92 + 0.94 + 2 * 0.5) / 5)
    assert "0.5" in failure_rule(0.5) and "no seed is ever dropped" in failure_rule(0.5)

    with pytest.raises(StudyError, match=r"\[1\].*both finished and failed"):
        with_failures(finished, {1}, 0.5)
    with pytest.raises(StudyError, match="non-finite"):
        with_failures({0: math.nan}, set(), 0.5)
    with pytest.raises(StudyError, match="finite"):
        with_failures(finished, {2}, math.nan)


def test_compare_counts_failures_and_keeps_the_pairing():
    a = {s: 0.9 + 0.001 * s for s in range(6)}
    b = {s: 0.88 + 0.001 * s for s in range(6) if s != 2}
    row = compare(a, b, failed_b={2}, failure_value=0.5)
    assert row["pairing"] == "paired" and row["n_pairs"] == 6  # the diverged seed keeps its pair
    assert (row["n_failed_a"], row["n_failed_b"], row["n_b"]) == (0, 1, 6)
    assert row["mean_b"] == pytest.approx((sum(b.values()) + 0.5) / 6)
    with pytest.raises(StudyError, match="failure value"):
        compare(a, b, failed_b={2})
    with pytest.raises(StudyError, match="non-finite"):
        compare(a, {**b, 2: math.nan})  # a NaN is a failure to declare, not a number to average


def test_compare_all_enters_failures_before_orienting():
    results = {"steady": {s: 0.85 for s in range(4)} | {0: 0.84}, "brittle": {s: 0.95 for s in range(1, 4)}}
    rows = compare_all(results, failed={"brittle": {0}}, failure_value=0.5)
    row = rows[0]
    # brittle's finished seeds are better, but its diverged seed at chance level puts it below steady.
    assert (row["family_a"], row["family_b"]) == ("steady", "brittle")
    assert row["mean_b"] == pytest.approx((3 * 0.95 + 0.5) / 4) and row["n_failed_b"] == 1
    assert row["pairing"] == "paired"
    with pytest.raises(StudyError, match="unknown"):
        compare_all(results, failed={"nope": {0}}, failure_value=0.5)
    with pytest.raises(StudyError, match="failure value"):
        compare_all(results, failed={"brittle": {0}})


# --- edge cases: NaN with a reason, never a crash ---

def test_one_seed_each():
    row = compare({1: 0.9}, {1: 0.8})
    for key in ("p_t", "p_wilcoxon", "ci_low", "boot_ci_low", "effect_size"):
        if key == "p_wilcoxon":
            continue  # Mann-Whitney with 1 vs 1 is computable (p = 1), if useless
        assert math.isnan(row[key]), key
    assert "fewer than 2 seeds" in row["notes"] and row["diff"] == pytest.approx(0.1)
    assert row["prob_a_beats_b"] == 1.0


def test_identical_families():
    same = {s: 0.9 for s in range(5)}
    row = compare(same, same)
    assert row["pairing"] == "paired" and row["diff"] == 0 and row["prob_a_beats_b"] == 0.5
    assert all(math.isnan(row[k]) for k in ("p_t", "p_wilcoxon", "ci_low", "boot_ci_low", "effect_size"))
    assert "all differences are zero" in row["notes"] and "sd 0" in row["notes"]

    row = compare(same, shifted(same))
    assert row["pairing"] == "unpaired" and row["prob_a_beats_b"] == 0.5
    assert all(math.isnan(row[k]) for k in ("p_t", "p_wilcoxon", "ci_low", "boot_ci_low", "effect_size"))
    assert "nothing to rank" in row["notes"] and "both families have sd 0" in row["notes"]


def test_constant_nonzero_differences():
    row = compare({s: 0.9 for s in range(4)}, {s: 0.8 for s in range(4)})
    assert math.isnan(row["p_t"]) and math.isnan(row["effect_size"]) and "sd 0" in row["notes"]
    assert row["p_wilcoxon"] == pytest.approx(2 / 16)  # the rank test still speaks: 4 of 4 seeds favour A


def test_empty_family_and_empty_study():
    row = compare({}, {1: 0.9, 2: 0.8})
    assert math.isnan(row["diff"]) and "no seeds" in row["notes"]
    assert compare_all({}) == [] and compare_all({"only": {1: 0.9}}) == []


def test_compare_all_holm_skips_untestable_pairs():
    results = {"a": {s: 0.9 for s in range(4)}, "b": {s: 0.9 for s in range(4)},
               "c": {s: 0.8 + 0.01 * s for s in range(4)}}
    rows = compare_all(results)
    tied = next(r for r in rows if {r["family_a"], r["family_b"]} == {"a", "b"})
    assert math.isnan(tied["p_t_holm"]) and math.isnan(tied["p_wilcoxon_holm"])
    tested = [r for r in rows if r is not tied]
    assert [r["p_t_holm"] for r in tested] == pytest.approx(hand_holm([r["p_t"] for r in tested]))


def test_markdown_table_has_a_row_per_pair_and_the_rules():
    a, b = correlated()
    rows = compare_all({"a": a, "b": b, "c": shifted(b)}, failed={"c": {999}}, failure_value=0.5)
    text = comparisons_markdown(rows, failure_value=0.5)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 3  # header and one row per pair
    assert "Holm-corrected over all 3 pairs" in text and failure_rule(0.5) in text and "higher mean" in text
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_paired_t_power_matches_the_textbook_sample_sizes():
    # Cohen's d_z 0.5, two-sided α 0.05, power 0.8: n = 33.37 -> 34 (G*Power: actual power 0.8077775 at n = 34);
    # d_z 0.8: n = 14.3 -> 15
    assert paired_t_power(0.5, 34) == pytest.approx(0.8077775, rel=1e-4)
    assert paired_t_power(0.5, 33) < 0.8 < paired_t_power(0.5, 34)
    assert paired_t_power(0.8, 14) < 0.8 < paired_t_power(0.8, 15)
    assert seeds_to_resolve(0.5, 1.0) == 34 and seeds_to_resolve(0.8, 1.0) == 15
    # only the standardized difference counts, not its sign or units
    assert seeds_to_resolve(-0.01, 0.02) == 34 and seeds_to_resolve(0.008, 0.01) == 15
    assert paired_t_power(0.0, 10) == pytest.approx(0.05)  # no effect: the test's level
    assert math.isnan(paired_t_power(0.5, 1))


def test_detectable_difference_is_where_the_power_reaches_80_percent():
    delta = detectable_difference(1.0, 34)
    assert paired_t_power(delta, 34) == pytest.approx(0.8, rel=1e-6)
    assert delta < 0.5 < detectable_difference(1.0, 33)  # 34 seeds resolve d_z 0.5, 33 do not
    assert detectable_difference(0.02, 10) == pytest.approx(0.02 * detectable_difference(1.0, 10), rel=1e-6)
    assert detectable_difference(1.0, 100) < detectable_difference(1.0, 10)
    for sd, n in ((0.0, 10), (math.nan, 10), (1.0, 1)):
        assert math.isnan(detectable_difference(sd, n))


def test_seeds_to_resolve_is_capped_and_empty_without_a_difference():
    assert seeds_to_resolve(0.0, 1.0) is None and seeds_to_resolve(0.1, 0.0) is None
    assert seeds_to_resolve(0.001, 1.0) == MAX_SEEDS + 1  # would need ~7.85 million seeds
    n = seeds_to_resolve(0.03, 1.0)  # large n: the normal approximation (2.80 / 0.03)² + ~2 is close
    assert 8700 < n <= MAX_SEEDS and paired_t_power(0.03, n - 1) < 0.8 <= paired_t_power(0.03, n)
    assert paired_t_power(0.5, 5000) == pytest.approx(1.0)  # far in the tail: not NaN


def test_resolution_of_observed_paired_differences():
    differences = [0.01, 0.03, 0.02, 0.04, 0.0]
    row = resolution(differences)
    sd = np.std(differences, ddof=1)
    assert row["sd_diff"] == pytest.approx(sd)
    assert row["detectable_diff"] == pytest.approx(detectable_difference(sd, 5))
    assert row["seeds_to_resolve"] == seeds_to_resolve(np.mean(differences), sd)
    assert paired_t_power(np.mean(differences) / sd, row["seeds_to_resolve"]) >= 0.8
    single = resolution([0.01])
    assert math.isnan(single["sd_diff"]) and math.isnan(single["detectable_diff"])
    assert single["seeds_to_resolve"] is None
