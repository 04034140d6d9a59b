"""Statistics of per-seed results (scipy.stats): summaries, and honest comparisons of families (DESIGN.md 2b).

- `describe`, `format_summary`: one family's mean, std, Student-t CI, n.
- `with_failures`: diverged seeds enter at a stated failure value; no seed is ever dropped (`FAILURE_RULE`).
- `compare`: two families; paired when they ran the same seeds (rerun seed k draws the same splits and initial
  seed for every family), otherwise unpaired, and says which and why.
- `compare_all`: every pair of families, p-values Holm-corrected over all pairs (`holm`).
- `comparisons_markdown`: the rows of `compare_all` as a Markdown table with its legend.

Every statistic that cannot be computed is NaN, and the row's `notes` say why; nothing here raises on small or
degenerate data (only on inconsistent input: a seed both finished and failed, a non-finite value).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import special, stats

from study.infra.errors import StudyError

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 9999  # scipy's default for bootstrap and permutation tests
BOOTSTRAP_MIN_N = 10  # below this many seeds the bootstrap CI under-covers badly; the row's notes say so

FAILURE_RULE = ("A seed whose run diverged (NaN loss) is a failure of its family, not missing data: it enters "
                "every statistic at the failure value {failure_value:g} (chance level), and no seed is ever "
                "dropped.")

ORIENTATION_RULE = ("Each pair is oriented so that A is the family with the higher mean (Δ = A − B ≥ 0); "
                    "P(A > B) is the chance that A beats B on a seed (ties count half).")

# What each field of a comparison row means; a report can print it as a legend.
COMPARISON_FIELDS = {
    "family_a": "family A (in compare_all: the one with the higher mean)",
    "family_b": "family B",
    "pairing": "'paired' when both families ran the same seeds (n ≥ 2), else 'unpaired'",
    "pairing_reason": "why that pairing was chosen",
    "n_a": "seeds of A (failed seeds included)",
    "n_b": "seeds of B (failed seeds included)",
    "n_pairs": "seeds shared by A and B when paired, else 0",
    "n_failed_a": "seeds of A that diverged and entered at the failure value",
    "n_failed_b": "seeds of B that diverged and entered at the failure value",
    "mean_a": "mean of A over its seeds",
    "mean_b": "mean of B over its seeds",
    "diff": "mean of A − mean of B (paired: the mean of the per-seed differences, the same number)",
    "ci_low": "lower end of the CI of diff from Student's t (paired t on the differences, or Welch)",
    "ci_high": "upper end of the t CI of diff",
    "boot_ci_low": "lower end of the BCa bootstrap CI of diff (paired: resampling seeds; unpaired: each family)",
    "boot_ci_high": "upper end of the BCa bootstrap CI of diff",
    "t_test": "'paired t' or 'Welch t'",
    "p_t": "two-sided p-value of that t-test",
    "p_t_holm": "p_t Holm-corrected over all pairs compared (compare_all only)",
    "rank_test": "'Wilcoxon signed-rank' (paired) or 'Mann-Whitney U' (unpaired, the Wilcoxon rank-sum test)",
    "p_wilcoxon": "two-sided p-value of that rank test",
    "p_wilcoxon_holm": "p_wilcoxon Holm-corrected over all pairs compared (compare_all only)",
    "effect_size": "standardized difference: Cohen's d_z (paired) or Hedges' g (unpaired)",
    "effect_size_kind": "'cohen_dz' = mean diff / sd of diffs; 'hedges_g' = diff / pooled sd, small-n corrected",
    "prob_a_beats_b": "P(A > B): paired, the fraction of seeds where A beats B; unpaired, U / (n_a n_b); "
                      "ties count half",
    "confidence": "confidence level of both CIs",
    "notes": "why any statistic is NaN, and caveats (e.g. a rank test that cannot reach p < 0.05)",
}


def describe(values) -> dict:
    """mean, sample std (ddof 1), 95% CI of the mean from Student's t, n. CI is NaN for n < 2."""
    values = np.asarray(list(values), dtype=float)
    n = len(values)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan, "n": 0}
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    if n > 1 and std > 0:
        low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n))
    elif n > 1:
        low = high = mean
    else:
        low = high = math.nan
    return {"mean": mean, "std": std, "ci95_low": float(low), "ci95_high": float(high), "n": n}


def format_summary(name: str, d: dict) -> str:
    return (f"{name} {d['mean']:.4f} ± {d['std']:.4f} (95% CI [{d['ci95_low']:.4f}, {d['ci95_high']:.4f}], "
            f"n={d['n']})")


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; scipy has no Holm, and statsmodels is not a dependency).

    A NaN p-value (a test that could not be run) stays NaN and is not counted among the m tests: it can make
    no false discovery."""
    tested = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(tested)
    order = sorted(tested, key=lambda i: p_values[i])
    adjusted, running = [math.nan] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def failure_rule(failure_value: float) -> str:
    """FAILURE_RULE with the value filled in, for a report to print."""
    return FAILURE_RULE.format(failure_value=failure_value)


WORST = "worst"  # a failure-value setting: the worst finished seed (for an error metric, which has no chance level)


def resolve_failure_value(setting: str | float | None, finished: Iterable[float],
                          higher_is_better: bool = True) -> float | None:
    """The value a diverged seed enters at (FAILURE_RULE): `setting` as a number (a chance level), or WORST (or
    None: not recorded) for the worst of the `finished` values (the lowest when higher is better, else the
    highest). None when WORST has no finished value to take, so the failed seeds cannot be valued."""
    if setting is not None and str(setting) != WORST:
        return float(setting)
    values = [float(v) for v in finished if math.isfinite(v)]
    if not values:
        return None
    return min(values) if higher_is_better else max(values)


def _seed_key(seed):
    """A seed as a key: an int (a seed read from a tag is a string), or a tuple such as (study seed, seed)."""
    return seed if isinstance(seed, tuple) else int(seed)


def with_failures(values: Mapping[int, float], failed: Iterable[int], failure_value: float) -> dict[int, float]:
    """Seed -> value for every seed, the failed (diverged) ones at `failure_value`; see FAILURE_RULE.

    Dropping diverged seeds would report a family only on the seeds where it happened to work. Raises
    StudyError for a seed that is both finished and failed, a non-finite finished value (it should be listed as
    failed instead) or a non-finite failure value (a NaN would silently drop the seed downstream)."""
    if not math.isfinite(failure_value):
        raise StudyError(f"the failure value must be a finite number, not {failure_value!r}")
    failed = {_seed_key(seed) for seed in failed}
    both = sorted(failed & {_seed_key(seed) for seed in values})
    if both:
        raise StudyError(f"seed(s) {both} are both finished and failed; each seed is one or the other")
    bad = sorted(_seed_key(seed) for seed, value in values.items() if not math.isfinite(value))
    if bad:
        raise StudyError(f"seed(s) {bad} finished with a non-finite value; list them as failed instead")
    merged = {_seed_key(seed): float(value) for seed, value in values.items()}
    merged.update({seed: float(failure_value) for seed in failed})
    return dict(sorted(merged.items()))


def _pairing(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[str, str]:
    seeds_a, seeds_b = set(a), set(b)
    if seeds_a == seeds_b and len(seeds_a) >= 2:
        return "paired", f"same {len(seeds_a)} seeds: seed k has the same splits and initial seed in both"
    if seeds_a == seeds_b:
        return "unpaired", f"only {len(seeds_a)} seed(s): too few to pair"
    only_a, only_b = sorted(seeds_a - seeds_b), sorted(seeds_b - seeds_a)
    # Pairing on the shared seeds only would drop seeds; comparing all of them unpaired drops none.
    return "unpaired", f"seed sets differ (only in A: {only_a or 'none'}; only in B: {only_b or 'none'})"


def _bootstrap(data: tuple, statistic, confidence: float, n_resamples: int, seed: int, notes: list[str]):
    """BCa interval from scipy.stats.bootstrap; (nan, nan) with a note when scipy cannot give one."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stats.bootstrap(data, statistic, vectorized=True, n_resamples=n_resamples,
                                 confidence_level=confidence, method="BCa", rng=seed)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if min(len(sample) for sample in data) < BOOTSTRAP_MIN_N:
        notes.append(f"bootstrap CI from fewer than {BOOTSTRAP_MIN_N} seeds a side is too narrow (resampling "
                     "sees only the observed values); read the t CI")
    if math.isnan(low) or math.isnan(high):
        reason = next((str(w.message).split(".")[0] for w in caught
                       if issubclass(w.category, stats.DegenerateDataWarning)), "no interval")
        notes.append(f"bootstrap CI NaN: {reason}")
        return math.nan, math.nan
    return low, high


def _mean_difference(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _paired(a: np.ndarray, b: np.ndarray, row: dict, confidence: float, n_resamples: int, seed: int,
            notes: list[str]) -> None:
    d = a - b
    n = len(d)
    sd = float(np.std(d, ddof=1))
    row.update(t_test="paired t", rank_test="Wilcoxon signed-rank", effect_size_kind="cohen_dz", n_pairs=n,
               # P(A > B) over seeds: the share of seeds where A wins, a tie counting half.
               prob_a_beats_b=float(np.mean(d > 0) + 0.5 * np.mean(d == 0)))

    if sd > 0:
        # t on the per-seed differences: seed-to-seed variation shared by both families cancels out.
        test = stats.ttest_rel(a, b)
        interval = test.confidence_interval(confidence)
        row.update(p_t=float(test.pvalue), ci_low=float(interval.low), ci_high=float(interval.high),
                   effect_size=float(np.mean(d)) / sd)
        # BCa (scipy's default): corrects the percentile interval for the bias and skew of the bootstrap
        # distribution, which failures entered at chance level make lopsided. Resampling the differences is
        # the paired bootstrap: a seed is resampled with both of its results.
        row["boot_ci_low"], row["boot_ci_high"] = _bootstrap((d,), np.mean, confidence, n_resamples, seed, notes)
    else:
        notes.append(f"paired t, its CI, d_z and the bootstrap CI NaN: all {n} differences equal "
                     f"({float(d[0]):g}), sd 0")

    if np.all(d == 0):
        notes.append("Wilcoxon NaN: all differences are zero")
    else:
        # Pratt's rule keeps zero differences (seeds where both families scored the same) in the ranking
        # instead of discarding them, so a tie still counts toward n (no seed is dropped). scipy picks the
        # exact null distribution (or an exhaustive sign-flip permutation when there are ties/zeros, n <= 13).
        row["p_wilcoxon"] = float(stats.wilcoxon(a, b, zero_method="pratt").pvalue)
        if n < 6:
            notes.append(f"Wilcoxon with n={n} cannot reach p < {2 / 2 ** n:g} (two-sided)")


def _unpaired(a: np.ndarray, b: np.ndarray, row: dict, confidence: float, n_resamples: int, seed: int,
              notes: list[str]) -> None:
    n_a, n_b = len(a), len(b)
    row.update(t_test="Welch t", rank_test="Mann-Whitney U", effect_size_kind="hedges_g")
    if n_a == 0 or n_b == 0:
        notes.append("every statistic NaN: a family has no seeds")
        return

    # U of A = pairs (a, b) with a > b, plus half the ties: U / (n_a n_b) is the common-language effect size.
    ties = bool(np.any(np.isin(a, b))) or len(np.unique(a)) < n_a or len(np.unique(b)) < n_b
    ties = ties and n_a >= 2 and n_b >= 2  # scipy's permutation test needs 2 seeds a side
    if ties:
        # With ties scipy's exact U distribution does not hold and the normal approximation is poor for ~10
        # seeds: a permutation test (exact when all splits fit in n_resamples, else Monte Carlo, fixed seed).
        method = stats.PermutationMethod(n_resamples=n_resamples, rng=seed)
    else:
        method = "auto"  # exact for small samples, asymptotic for large
    with np.errstate(invalid="ignore", divide="ignore"):  # all values equal: z is 0/0, its p discarded below
        u = stats.mannwhitneyu(a, b, alternative="two-sided", method=method)
    row["prob_a_beats_b"] = float(u.statistic) / (n_a * n_b)
    if len(np.unique(np.concatenate([a, b]))) == 1:
        notes.append("Mann-Whitney NaN: every value is the same, nothing to rank")
    else:
        row["p_wilcoxon"] = float(u.pvalue)
        if ties:
            row["rank_test"] = "Mann-Whitney U (permutation, ties)"

    if n_a < 2 or n_b < 2:
        notes.append(f"Welch t, its CI, Hedges' g and the bootstrap CI NaN: a family has fewer than 2 seeds "
                     f"(n_a={n_a}, n_b={n_b})")
        return
    var_a, var_b = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    if var_a == 0 and var_b == 0:
        notes.append("Welch t, its CI, Hedges' g and the bootstrap CI NaN: both families have sd 0")
        return
    # Welch: does not assume the two families vary equally (a family that sometimes fails varies more).
    with warnings.catch_warnings():
        # A family with sd 0 (every seed the same accuracy) is legitimate here; scipy warns on it anyway.
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(confidence)
    row.update(p_t=float(test.pvalue), ci_low=float(interval.low), ci_high=float(interval.high))
    # Hedges' g: Cohen's d on the pooled sd, times the exact small-sample correction J(df) (d is biased upward
    # by ~4% at 10 + 10 seeds, ~10% at 5 + 5). J = Γ(df/2) / (√(df/2) Γ((df−1)/2)), from scipy.special.gammaln.
    df = n_a + n_b - 2
    pooled = math.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / df)
    j = math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2)
    row["effect_size"] = j * (float(a.mean()) - float(b.mean())) / pooled
    # Each family resampled on its own: no pairing to preserve.
    row["boot_ci_low"], row["boot_ci_high"] = _bootstrap((a, b), _mean_difference, confidence, n_resamples,
                                                         seed, notes)


def compare(a: Mapping[int, float], b: Mapping[int, float], name_a: str = "A", name_b: str = "B", *,
            failed_a: Iterable[int] = (), failed_b: Iterable[int] = (), failure_value: float | None = None,
            confidence: float = DEFAULT_CONFIDENCE, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Compare family A with family B (differences are A − B) from their seed -> metric mappings.

    Paired when both have the same seeds (at least 2): paired t on the differences with its t CI, BCa bootstrap
    CI of the mean difference, Wilcoxon signed-rank, Cohen's d_z, P(A > B) over seeds. Otherwise unpaired:
    Welch's t with its CI, BCa bootstrap CI of the difference of means, Mann-Whitney U, Hedges' g,
    P(A > B) = U / (n_a n_b). The fields are COMPARISON_FIELDS (less the Holm ones); what cannot be computed is
    NaN and `notes` says why.

    `failed_a` / `failed_b`: diverged seeds, entered at `failure_value` (see with_failures) and counted in
    n_failed_a / n_failed_b; pass them here or merge them beforehand with with_failures, not both.
    `seed` fixes the bootstrap and permutation resampling, so the same input gives the same row."""
    failed_a, failed_b = set(failed_a), set(failed_b)
    if failed_a or failed_b:
        if failure_value is None:
            raise StudyError("failed seeds were given without a failure value to enter them at")
        a, b = with_failures(a, failed_a, failure_value), with_failures(b, failed_b, failure_value)
    for name, values in ((name_a, a), (name_b, b)):
        bad = sorted(seed_ for seed_, value in values.items() if not math.isfinite(value))
        if bad:
            raise StudyError(f"{name}: seed(s) {bad} have a non-finite value; pass them as failed seeds")

    pairing, reason = _pairing(a, b)
    seeds = sorted(a) if pairing == "paired" else None
    x = np.array([a[s] for s in seeds] if seeds else list(a.values()), dtype=float)
    y = np.array([b[s] for s in seeds] if seeds else list(b.values()), dtype=float)
    nan = math.nan
    row = {"family_a": name_a, "family_b": name_b, "pairing": pairing, "pairing_reason": reason,
           "n_a": len(x), "n_b": len(y), "n_pairs": 0, "n_failed_a": len(failed_a), "n_failed_b": len(failed_b),
           "mean_a": float(x.mean()) if len(x) else nan, "mean_b": float(y.mean()) if len(y) else nan,
           "diff": nan, "ci_low": nan, "ci_high": nan, "boot_ci_low": nan, "boot_ci_high": nan,
           "t_test": "", "p_t": nan, "rank_test": "", "p_wilcoxon": nan, "effect_size": nan,
           "effect_size_kind": "", "prob_a_beats_b": nan, "confidence": confidence, "notes": ""}
    row["diff"] = row["mean_a"] - row["mean_b"]
    notes: list[str] = []
    (_paired if pairing == "paired" else _unpaired)(x, y, row, confidence, n_resamples, seed, notes)
    row["notes"] = "; ".join(notes)
    return row


def compare_all(results: Mapping[str, Mapping[int, float]], *, failed: Mapping[str, Iterable[int]] | None = None,
                failure_value: float | None = None, confidence: float = DEFAULT_CONFIDENCE,
                n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> list[dict]:
    """Every pair of families (k(k−1)/2 rows), not each against the observed best: picking the comparison
    after seeing the winner is a comparison chosen after looking (DESIGN.md 2b).

    Rows follow the order of `results` (pairs (0,1), (0,2), …, (1,2), …). Each pair is oriented by
    ORIENTATION_RULE: A has the higher mean (the first in `results` order on a tie), so diff ≥ 0. p_t and
    p_wilcoxon are Holm-corrected over all pairs into p_t_holm and p_wilcoxon_holm (NaN p-values stay NaN and
    are not counted). `failed`: family -> diverged seeds, entered at `failure_value` (FAILURE_RULE)."""
    failed = {name: set(seeds) for name, seeds in (failed or {}).items()}
    unknown = sorted(set(failed) - set(results))
    if unknown:
        raise StudyError(f"failed seeds given for unknown famil(ies) {unknown}")
    if any(failed.values()) and failure_value is None:
        raise StudyError("failed seeds were given without a failure value to enter them at")
    full = {name: with_failures(values, failed.get(name, ()), failure_value if failure_value is not None else 0.0)
            for name, values in results.items()}
    means = {name: (float(np.mean(list(values.values()))) if values else math.nan) for name, values in full.items()}

    rows = []
    for first, second in itertools.combinations(list(results), 2):
        high, low = (second, first) if means[second] > means[first] else (first, second)
        rows.append(compare(results[high], results[low], high, low, failed_a=failed.get(high, ()),
                            failed_b=failed.get(low, ()), failure_value=failure_value, confidence=confidence,
                            n_resamples=n_resamples, seed=seed))
    adjusted_t, adjusted_w = holm([r["p_t"] for r in rows]), holm([r["p_wilcoxon"] for r in rows])
    out = []
    for row, p_t_holm, p_wilcoxon_holm in zip(rows, adjusted_t, adjusted_w):
        ordered = {}
        for key, value in row.items():  # each corrected p-value beside its raw one
            ordered[key] = value
            if key == "p_t":
                ordered["p_t_holm"] = p_t_holm
            elif key == "p_wilcoxon":
                ordered["p_wilcoxon_holm"] = p_wilcoxon_holm
        out.append(ordered)
    return out


def format_comparison(row: dict, scale: float = 100.0) -> str:
    """One Markdown table row of a compare_all row; differences and CIs times `scale` (100: percentage
    points). Columns as in comparisons_markdown."""
    def num(value: float, fmt: str) -> str:
        return "–" if math.isnan(value) else format(value, fmt)

    def interval(low: float, high: float) -> str:
        return "–" if math.isnan(low) else f"[{low * scale:+.2f}, {high * scale:+.2f}]"

    p_t, p_w = row.get("p_t_holm", row["p_t"]), row.get("p_wilcoxon_holm", row["p_wilcoxon"])
    n = f"{row['n_pairs']} pairs" if row["pairing"] == "paired" else f"{row['n_a']} / {row['n_b']}"
    failed = f"{row['n_failed_a']} / {row['n_failed_b']}"
    return (f"| {row['family_a']} − {row['family_b']} | {row['pairing']} | {n} | {failed} | "
            f"{num(row['diff'] * scale, '+.2f')} | {interval(row['ci_low'], row['ci_high'])} | "
            f"{interval(row['boot_ci_low'], row['boot_ci_high'])} | {num(p_t, '.2g')} | {num(p_w, '.2g')} | "
            f"{num(row['effect_size'], '.2f')} ({row['effect_size_kind'] or '–'}) | "
            f"{num(row['prob_a_beats_b'], '.2f')} | {row['notes'] or ''} |")


def comparisons_markdown(rows: list[dict], scale: float = 100.0, failure_value: float | None = None) -> str:
    """A Markdown table of compare_all rows with a legend (the failure rule when `failure_value` is given)."""
    confidence = rows[0]["confidence"] if rows else DEFAULT_CONFIDENCE
    legend = (f"Every pair of families. {ORIENTATION_RULE} Δ and CIs ×{scale:g}; {confidence:.0%} CIs from "
              "Student's t and from a BCa bootstrap. Paired (same seeds): paired t, Wilcoxon signed-rank, "
              "Cohen's d_z; unpaired: Welch t, Mann-Whitney U, Hedges' g. p-values Holm-corrected over all "
              f"{len(rows)} pairs.")
    if failure_value is not None:
        legend += " " + failure_rule(failure_value)
    lines = [legend, "",
             "| A − B | pairing | n | failed A / B | Δ | t CI | bootstrap CI | p t (Holm) | p rank (Holm) | "
             "effect size | P(A > B) | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [format_comparison(row, scale) for row in rows]
    return "\n".join(lines) + "\n"


# What a paired comparison can resolve (a two-sided paired t-test; the noncentral t gives its power exactly).
POWER = 0.8
MAX_SEEDS = 10_000  # seeds_to_resolve searches no further: a difference this small is not worth the seeds


def paired_t_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired (one-sample) t-test at level `alpha` with `n` pairs when the true mean
    difference is `effect` standard deviations of the differences (Cohen's d_z): P(|T| > t_crit) with T noncentral
    t, df n − 1, noncentrality d_z √n."""
    if n < 2:
        return math.nan
    df, nc = n - 1, abs(effect) * math.sqrt(n)
    critical = stats.t.ppf(1 - alpha / 2, df)
    with np.errstate(all="ignore"):
        power = float(stats.nct.sf(critical, df, nc) + stats.nct.cdf(-critical, df, nc))
    if math.isnan(power):  # scipy's nct fails far in the tail (large nc): there the normal limit is exact enough
        power = float(stats.norm.sf(critical - nc) + stats.norm.cdf(-critical - nc))
    return power


def detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest true mean paired difference that a two-sided paired t-test at `alpha` with `n` pairs detects
    with probability `power`, given `sd` of the paired differences; NaN for n < 2 or an sd that is 0 or unknown."""
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return math.nan
    from scipy.optimize import brentq

    high = 1.0
    while paired_t_power(high, n, alpha) < power:  # bracket the root: power rises with the effect
        high *= 2
    return float(brentq(lambda d: paired_t_power(d, n, alpha) - power, 0.0, high, xtol=1e-10)) * sd


def seeds_to_resolve(diff: float, sd: float, alpha: float = 0.05, power: float = POWER,
                     cap: int = MAX_SEEDS) -> int | None:
    """The smallest number of paired seeds at which a true mean difference `diff` (with `sd` of the paired
    differences) is detected by a two-sided paired t-test at `alpha` with probability `power`; cap + 1 when more
    than `cap` would be needed; None when there is nothing to resolve (diff 0, sd 0 or unknown)."""
    if not (math.isfinite(diff) and math.isfinite(sd)) or diff == 0 or sd <= 0:
        return None
    effect = abs(diff) / sd
    low, high = 1, 2  # doubling, then bisection: power(low) < power <= power(high); the power rises with n
    while paired_t_power(effect, high, alpha) < power:
        if high >= cap:
            return cap + 1
        low, high = high, min(2 * high, cap)
    while high - low > 1:
        middle = (low + high) // 2
        if paired_t_power(effect, middle, alpha) >= power:
            high = middle
        else:
            low = middle
    return high


def resolution(differences, alpha: float = 0.05, power: float = POWER) -> dict:
    """From the observed paired differences (one per seed): their sd, the smallest difference these seeds detect
    (detectable_difference) and the seeds the observed mean difference needs (seeds_to_resolve)."""
    d = np.asarray(list(differences), dtype=float)
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else math.nan
    return {"sd_diff": sd, "detectable_diff": detectable_difference(sd, len(d), alpha, power),
            "seeds_to_resolve": seeds_to_resolve(float(d.mean()), sd, alpha, power) if len(d) > 1 else None}
