"""The table task (a user's CSV or Parquet file): features, string labels, impute, splits, the multi-head families
and one clear error per bad input, on tiny tables written into tmp_path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import run_in_process
from study.config.space import resolve_config
from study.families import families_of
from study.infra.errors import StudyError
from study.tasks import open_task
from study.training.train import fit

HEADS = "sex: classes:[F,M]\ngrade: classes\nage: regression\nid: ignore\n"


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """sex (F / M: the sign of f0), grade (a / b / c: the largest of f1..f3), age (3 * f4 + 50), id, and the
    features f0..f5."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 6))
    table = pd.DataFrame({"id": np.arange(n), **{f"f{k}": f[:, k] for k in range(6)}})
    table["sex"] = np.where(f[:, 0] > 0, "M", "F")
    table["grade"] = np.array(["a", "b", "c"])[f[:, 1:4].argmax(1)]
    table["age"] = 3 * f[:, 4] + 50
    return table


def write(tmp_path, table: pd.DataFrame, heads: str | None = HEADS, suffix: str = ".csv") -> str:
    path = tmp_path / f"people{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path, index=False)
    if heads is not None:
        (tmp_path / "people.yaml").write_text(heads)
    return str(path)


def config(family: str, task, **overrides) -> dict:
    small = {"epochs": 1, "batch_size": 50, "width": 16, "depth": 1, **overrides}
    return task.with_settings(resolve_config(family, small, task="table"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_string_labels_become_classes_and_every_undeclared_column_a_feature(tmp_path, suffix):
    table = frame()
    task = open_task("table", data=write(tmp_path, table, suffix=suffix))
    heads = {head.name: head for head in task.spec.heads}
    assert list(heads) == ["sex", "grade", "age"]  # id ignored
    assert heads["sex"].labels == ("F", "M") and heads["grade"].labels == ("a", "b", "c")
    assert heads["grade"].classes == 3 and task.spec.input_shape == (6,)
    assert task.settings["heads"] == "sex=classes:[F,M],grade=classes:[a,b,c],age=regression,id=ignore"
    assert task.targets["grade"].tolist() == ["abc".index(g) for g in table["grade"]]
    assert task.targets["sex"].tolist() == (table["sex"] == "M").astype(int).tolist()
    # the canonical text is itself valid --heads, and gives the same task
    again = open_task("table", data=write(tmp_path, table, heads=None, suffix=suffix), heads=task.settings["heads"])
    assert again.settings == task.settings


def test_declared_classes_keep_their_order_and_a_binary_string_column_is_sorted(tmp_path):
    task = open_task("table", data=write(tmp_path, frame(), heads=None), heads="sex=classes:[M,F],grade=ignore,"
                                                                             "age=ignore,id=ignore")
    assert task.spec.head("sex").labels == ("M", "F")
    assert task.targets["sex"].tolist() == (frame()["sex"] == "F").astype(int).tolist()
    binary = open_task("table", data=write(tmp_path, frame(), heads=None), heads="sex=binary,grade=ignore,age=ignore,"
                                                                                "id=ignore")
    head = binary.spec.head("sex")
    assert head.kind == "binary" and head.labels == ("F", "M") and binary.targets["sex"].dtype == torch.float32


def test_features_by_list_or_regex(tmp_path):
    path = write(tmp_path, frame())
    task = open_task("table", data=path, heads=HEADS.replace("\n", ",").strip(",").replace(": ", "=")
                     + ",features=[f1,f3]")
    assert task.features == ["f1", "f3"] and task.settings["features"] == "[f1,f3]"
    (tmp_path / "regex.yaml").write_text(HEADS + "features: '^f[0-2]$'\n")
    task = open_task("table", data=path, heads=str(tmp_path / "regex.yaml"))
    assert task.features == ["f0", "f1", "f2"] and task.spec.input_shape == (3,)


def test_splits_are_disjoint_reproducible_and_share_one_test_set(tmp_path):
    task = open_task("table", data=write(tmp_path, frame()))
    cfg = config("split_heads", task, val_fraction=0.2, test_fraction=0.1)
    first, again, other = task.draw(1, cfg), task.draw(1, cfg), task.draw(2, cfg)
    ids = [set(part.ids.tolist()) for part in (first.train, first.val, first.test)]
    assert [len(s) for s in ids] == [140, 40, 20] and set.union(*ids) == set(range(200))
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.val.ids, again.val.ids)
    assert not torch.equal(first.val.ids, other.val.ids) and torch.equal(first.test.ids, other.test.ids)
    assert first.train.x.mean(0).abs().max() < 1e-4  # standardised with the train split's statistics


def test_a_split_column_is_the_split_for_every_seed(tmp_path):
    table = frame(n=90)
    table["split"] = np.tile(["train", "val", "test"], 30)
    task = open_task("table", data=write(tmp_path, table))
    for seed in (0, 3):
        data = task.draw(seed, config("split_heads", task))
        assert [part.ids.tolist() for part in (data.train, data.val, data.test)] == [
            list(range(code, 90, 3)) for code in range(3)]


def test_impute_mean_fills_a_missing_value_with_the_train_mean(tmp_path):
    table = frame()
    table.loc[[5, 17], "f2"] = np.nan
    table.loc[9, "f2"] = np.inf
    with pytest.raises(StudyError, match="column 'f2' has 3 missing values .*first in row 5; set impute: mean"):
        open_task("table", data=write(tmp_path, table))
    task = open_task("table", data=write(tmp_path, table, heads=HEADS + "impute: mean\n"))
    assert task.settings["impute"] == "mean"
    data = task.draw(0, config("split_heads", task))
    column = 2  # f2, standardised: the train mean is 0
    for part in (data.train, data.val, data.test):
        for row in (5, 9, 17):
            where = (part.ids == row).nonzero()
            if len(where):
                assert abs(float(part.x[where[0, 0], column])) < 1e-5
    assert all(torch.isfinite(part.x).all() for part in (data.train, data.val, data.test))
    with pytest.raises(StudyError, match="config impute '' differs"):
        task.draw(0, {**config("split_heads", task), "impute": ""})


def test_a_regression_head_trains_with_l1(tmp_path):
    table = frame()
    mse = open_task("table", data=write(tmp_path, table))
    l1 = open_task("table", data=write(tmp_path, table, heads=None), heads="sex=classes:[F,M],grade=classes,"
                                                                           "age=regression:l1,id=ignore")
    assert l1.spec.head("age").regression_loss == "l1" and "age=regression:l1" in l1.settings["heads"]
    losses = [fit(config("split_heads", task), task.draw(0, config("split_heads", task))).final["train/loss"]
              for task in (mse, l1)]
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


@pytest.mark.parametrize("family", families_of("table"))
def test_every_multi_head_family_fits_an_epoch(tmp_path, family):
    task = open_task("table", data=write(tmp_path, frame()))
    cfg = config(family, task, epochs=2)
    final = fit(cfg, task.draw(0, cfg), evaluate_test=True).final
    assert np.isfinite(final["train/loss"]) and 0 <= final["val/sex_acc"] <= 1 and "test/sex_acc" in final


def _with(**changes):
    def make(table):
        table = table.copy()
        for column, value in changes.items():
            if value is None:
                table = table.drop(columns=column)
            else:
                table[column] = value(table) if callable(value) else value
        return table
    return make


BAD = {
    "label column absent": (_with(grade=None), "label column 'grade' declared in .* is not in the file"),
    "class outside the declared set": (_with(sex=lambda t: t["sex"].where(t.index != 7, "X")),
                                       "column 'sex' row 7: value 'X' is not one of the declared classes F, M"),
    "nan feature": (_with(f3=lambda t: t["f3"].where(t.index != 4, np.nan)),
                    "column 'f3' has 1 missing values .*first in row 4"),
    "inf feature": (_with(f1=lambda t: t["f1"].where(t.index != 2, np.inf)), "column 'f1' has 1 missing values"),
    "text feature": (_with(f5=lambda t: t["sex"]), "feature column 'f5' is not numeric"),
    "missing label": (_with(sex=lambda t: t["sex"].where(t.index != 3, None)),
                      "column 'sex' has 1 missing values, first in row 3"),
    "empty split": (_with(split=lambda t: np.where(t.index % 2, "train", "test")),
                    "column 'split' marks no row 'val'"),
    "regression of strings": (_with(age=lambda t: t["sex"]), "column 'age' must hold numbers"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_table_is_one_error_naming_the_column_and_row(tmp_path, case):
    change, message = BAD[case]
    with pytest.raises(StudyError, match=message):
        open_task("table", data=write(tmp_path, change(frame())))


def test_a_missing_or_unreadable_file_is_one_error_naming_it(tmp_path):
    with pytest.raises(StudyError, match="data file .*nope.csv does not exist"):
        open_task("table", data=str(tmp_path / "nope.csv"), heads="a=binary")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(StudyError, match="data file .*broken.parquet cannot be read as parquet"):
        open_task("table", data=str(tmp_path / "broken.parquet"), heads="a=binary")
    (tmp_path / "people.txt").write_text("a,b\n1,2\n")
    with pytest.raises(StudyError, match="expected a .csv or .parquet file"):
        open_task("table", data=str(tmp_path / "people.txt"), heads="a=binary")


def test_a_bad_table_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    path = write(tmp_path, _with(grade=None)(frame()))
    done = run_in_process("study.fit", "--task", "table", "--data", path, "--family", "split_heads")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "label column 'grade'" in done.stderr


def test_a_gap_in_a_nullable_label_column_or_a_name_mlflow_cannot_log_is_one_error(tmp_path):
    table = frame()
    table["sex"] = pd.array(table["sex"].where(table.index != 3, None), dtype="string")  # Parquet keeps pd.NA
    with pytest.raises(StudyError, match="column 'sex' has 1 missing values, first in row 3"):
        open_task("table", data=write(tmp_path, table, suffix=".parquet"))
    table = frame().rename(columns={"age": "age (%)"})
    with pytest.raises(StudyError, match=r"head 'age \(%\)': a head's name becomes its metrics' names"):
        open_task("table", data=write(tmp_path, table, heads="sex: classes\nage (%): regression\nid: ignore\n"))
