"""The cifar100 task (tiny files in CIFAR-100's on-disk layout, written by helpers.make_fake_cifar100), its six
hard-parameter-sharing families and the cifar100_sharing preset. CPU, offline: nothing is downloaded."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch

from helpers import coarse_of, make_fake_cifar100, run_in_process, small_cifar_config
from study.config.presets import load_presets
from study.families import build_model, families_of, family_hyperparameters
from study.infra.errors import StudyError
from study.tasks import open_task
from study.tasks.cifar100 import SPECS, load_cifar100, random_crop_flip
from study.training.train import fit

FAMILIES = families_of("cifar100")
SHARED = {"shared_conv", "shared_reuse_coarse", "shared_reuse_fine"}


# -- loading ---------------------------------------------------------------------------------------------------


def test_both_labels_load_from_the_torchvision_layout(cifar100_task, fake_cifar100_dir):
    data = cifar100_task.data
    assert data.train_images.shape == (1500, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (300, 3, 32, 32)
    assert torch.equal(data.train_coarse, torch.from_numpy(coarse_of(data.train_fine.numpy())))
    assert set(data.train_fine.tolist()) == set(range(100)) and set(data.test_coarse.tolist()) == set(range(20))
    folder = load_cifar100(fake_cifar100_dir / "cifar-100-python", allow_download=False)  # the folder itself
    assert torch.equal(folder.test_images, data.test_images)
    assert [h.name for h in cifar100_task.spec.heads] == ["fine", "coarse"]
    assert (cifar100_task.spec.objective, cifar100_task.spec.primary_metric) == ("val/fine_acc", "test/fine_acc")


def test_a_file_pickled_by_numpy_1_as_the_official_release_is_loads_too(tmp_path):
    """The official pickles name numpy.core.multiarray._reconstruct; numpy 2 writes numpy._core."""
    root = make_fake_cifar100(tmp_path, n_train=200, n_test=100)
    path = root / "cifar-100-python" / "train"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_cifar100(root, allow_download=False).train_images.shape == (200, 3, 32, 32)


def test_splits_are_disjoint_seeded_and_standardised(cifar100_task):
    config = small_cifar_config(cifar100_task, "shared_conv", n_val=300, n_train=0)
    data = cifar100_task.draw(4, config)
    assert (len(data.train), len(data.val), len(data.test)) == (1200, 300, 300)
    assert not set(data.train.ids.tolist()) & set(data.val.ids.tolist())  # val drawn from train, disjoint
    assert torch.equal(data.test.ids, torch.arange(300))  # the official test images, every one, for every seed
    again = cifar100_task.draw(4, config)
    for split, twin in ((data.train, again.train), (data.val, again.val), (data.test, again.test)):
        assert torch.equal(split.x, twin.x) and all(torch.equal(split.targets[k], twin.targets[k]) for k in twin.targets)
    other = cifar100_task.draw(5, config)
    assert not torch.equal(other.val.ids, data.val.ids) and torch.equal(other.test.ids, data.test.ids)
    x = data.train.x
    assert x.mean((0, 2, 3)).abs().max() < 1e-4 and (x.std((0, 2, 3)) - 1).abs().max() < 1e-3  # per channel
    fewer = cifar100_task.draw(4, {**config, "n_train": 500})
    assert len(fewer.train) == 500 and torch.equal(fewer.val.ids, data.val.ids)


@pytest.mark.parametrize("settings, message", [
    ({"n_val": 1500}, "n_val = 1500 leaves no training image"),
    ({"n_val": 1000, "n_train": 600}, "n_train = 600 \\+ n_val = 1000 exceeds the 1500"),
])
def test_split_sizes_beyond_the_data_are_named(cifar100_task, settings, message):
    with pytest.raises(StudyError, match=message):
        cifar100_task.draw(0, {**small_cifar_config(cifar100_task, "shared_conv"), **settings})


def _corrupt(kind: str, folder):
    train = folder / "train"
    entry = pickle.loads(train.read_bytes())
    if kind == "truncated":
        train.write_bytes(train.read_bytes()[:5000])
    elif kind == "missing test":
        (folder / "test").unlink()
    elif kind == "not a dict":
        train.write_bytes(pickle.dumps([1, 2, 3]))
    elif kind == "no coarse labels":
        del entry["coarse_labels"]
        train.write_bytes(pickle.dumps(entry))
    elif kind == "wrong shape":
        entry["data"] = entry["data"][:, :1000]
        train.write_bytes(pickle.dumps(entry))
    elif kind == "label out of range":
        entry["fine_labels"][3] = 100
        train.write_bytes(pickle.dumps(entry))
    elif kind == "two superclasses":
        entry["coarse_labels"][entry["fine_labels"].index(7)] = (coarse_of(np.array(7)) + 1) % 20
        train.write_bytes(pickle.dumps(entry))
    elif kind == "unsafe pickle":
        train.write_bytes(b"cos\nsystem\n(S'touch PWNED'\ntR.")


BAD = {"truncated": "is truncated or not a CIFAR pickle", "missing test": "is incomplete: no file 'test'",
       "not a dict": "holds a list, not a dict", "no coarse labels": "has no 'coarse_labels'",
       "wrong shape": "'data' is uint8 \\(200, 1000\\), expected uint8 \\(N, 3072\\)",
       "label out of range": "'fine_labels' must lie in \\[0, 100\\), got values from 0 to 100",
       "two superclasses": "fine class 7 is labelled with superclasses",
       "unsafe pickle": "asks for os.system, which a CIFAR pickle never holds"}


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_copy_is_one_error_naming_the_file(tmp_path, kind, monkeypatch):
    root = make_fake_cifar100(tmp_path, n_train=200, n_test=100)
    _corrupt(kind, root / "cifar-100-python")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StudyError, match=BAD[kind]):
        open_task("cifar100", data_dir=root)
    assert not (tmp_path / "PWNED").exists()


def test_a_named_data_dir_that_does_not_exist_fails_before_any_download(tmp_path):
    with pytest.raises(StudyError, match="data dir .*nowhere does not exist"):
        open_task("cifar100", data_dir=tmp_path / "nowhere")


def test_an_empty_data_dir_asks_torchvision_to_download_and_names_what_to_put_there(tmp_path, monkeypatch):
    import study.tasks.cifar100 as cifar

    asked = []

    def offline(root):
        asked.append(root)
        raise StudyError(f"no CIFAR-100 under data dir {root}: offline")

    monkeypatch.setattr(cifar, "download", offline)
    with pytest.raises(StudyError, match="offline"):
        open_task("cifar100", data_dir=tmp_path)
    assert asked == [tmp_path]
    with pytest.raises(StudyError, match="expected .*cifar-100-python/ with train, test, meta"):
        load_cifar100(tmp_path, allow_download=False)


def test_a_bad_root_is_one_line_and_exit_2_from_the_command_line(tmp_path):
    root = make_fake_cifar100(tmp_path, n_train=200, n_test=100)
    _corrupt("truncated", root / "cifar-100-python")
    done = run_in_process("study.fit", "--task", "cifar100", "--family", "shared_conv", "--data-dir", str(root),
                          "--epochs", "1")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: CIFAR-100 file ") and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_the_arrays_flags_are_refused(fake_cifar100_dir):
    with pytest.raises(StudyError, match="--data and --heads are for the arrays task"):
        open_task("cifar100", data_dir=fake_cifar100_dir, data="x.npz")


# -- augmentation ------------------------------------------------------------------------------------------------


def test_random_crop_flip_crops_each_image_from_its_padded_copy_and_flips_about_half():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32)
    out = random_crop_flip(x)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flipped = 0
    for image, source in zip(out, padded):
        windows = [source[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        plain = any(torch.equal(image, w) for w in windows)
        mirrored = any(torch.equal(image, w.flip(-1)) for w in windows)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 16 < flipped < 48
    assert not torch.equal(out, x)


def test_augmentation_trains_and_keeps_the_labels(cifar100_task):
    config = small_cifar_config(cifar100_task, "shared_conv", epochs=1)
    data = cifar100_task.draw(0, config)
    x, targets = data.train.rows(slice(0, 8))
    _, same = data.spec.augment(x, targets)
    assert same is targets
    plain, augmented = fit(config, data, device="cpu"), fit({**config, "augment": True}, data, device="cpu")
    assert plain.history != augmented.history


# -- families ----------------------------------------------------------------------------------------------------


def _model(family: str, **overrides):
    torch.manual_seed(0)
    config = {"conv_width": 4, "fc_width": 16, "dropout": 0.0, "fine_weight": 1.0, "coarse_weight": 1.0,
              **overrides}
    return build_model(SPECS["fine"], {"family": family,
                                       **{k: config[k] for k in family_hyperparameters(family)}})


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_and_every_parameter_gets_a_gradient(family):
    model = _model(family).train()
    out = model(torch.randn(6, 3, 32, 32))
    assert out["fine"].shape == (6, 100) and out["coarse"].shape == (6, 20)
    model.loss(out, {"fine": torch.randint(0, 100, (6,)), "coarse": torch.randint(0, 20, (6,))}).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{family}: {name} got no gradient"


def test_the_six_architectures_differ_as_the_source_describes():
    models = {family: _model(family) for family in FAMILIES}
    for family, model in models.items():
        assert len(model.trunks) == (1 if family in SHARED else 2)
        reused = {"reuse_coarse": "coarse", "shared_reuse_coarse": "coarse", "reuse_fine": "fine",
                  "shared_reuse_fine": "fine"}.get(family)
        first = {head: model.heads_fc[head][1].in_features for head in ("fine", "coarse")}
        trunk = 4 * 4 * 4 * 4  # 4 conv_width channels of 4x4
        extra = {"fine": 20 if reused == "coarse" else 0, "coarse": 100 if reused == "fine" else 0}
        assert first == {head: trunk + extra[head] for head in first}, family
    # Paired comparisons: for a seed every family starts from the same trunk (the shared one or the fine head's).
    reference = models["independent_nets"].trunks["fine"].state_dict()
    for model in models.values():
        assert all(torch.equal(value, reference[key]) for key, value in model.trunks["fine"].state_dict().items())


def test_the_fine_head_reads_the_coarse_output_in_reuse_coarse():
    model = _model("reuse_coarse").eval()
    x = torch.randn(4, 3, 32, 32)
    before = model(x)["fine"]
    with torch.no_grad():
        model.heads_fc["coarse"][-1].bias += 5 * torch.randn(20)  # change the coarse output only
    after = model(x)
    assert not torch.allclose(after["fine"], before)


def test_loss_weights_weigh_each_heads_loss_and_independent_nets_takes_none():
    assert "fine_weight" not in family_hyperparameters("independent_nets")
    model = _model("shared_conv", coarse_weight=3.0, fine_weight=0.5).eval()
    out = model(torch.randn(4, 3, 32, 32))
    targets = {"fine": torch.randint(0, 100, (4,)), "coarse": torch.randint(0, 20, (4,))}
    fine = torch.nn.functional.cross_entropy(out["fine"], targets["fine"])
    coarse = torch.nn.functional.cross_entropy(out["coarse"], targets["coarse"])
    torch.testing.assert_close(model.loss(out, targets), 0.5 * fine + 3.0 * coarse)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_learns_both_heads_above_chance(cifar100_task, family):
    config = small_cifar_config(cifar100_task, family, epochs=3, n_train=800, n_val=100, lr=3e-3, batch_size=40,
                                dropout=0.0, conv_width=8, fc_width=64)
    result = fit(config, cifar100_task.draw(1, config), evaluate_test=True, device="cpu")
    final = result.final
    assert final["test/fine_acc"] > 3 / 100 and final["test/coarse_acc"] > 3 / 20, final  # 3x chance


def test_the_objective_head_setting_makes_coarse_the_objective(cifar100_task):
    config = small_cifar_config(cifar100_task, "shared_conv", epochs=1, objective_head="coarse")
    data = cifar100_task.draw(0, config)
    assert (data.spec.objective, data.spec.primary_metric) == ("val/coarse_acc", "test/coarse_acc")
    assert cifar100_task.spec_for(config) is data.spec
    result = fit(config, data, evaluate_test=True, device="cpu")
    assert set(result.summary()) == {"val/coarse_acc", "val/coarse_acc_best", "best_epoch", "test/coarse_acc",
                                     "test/coarse_acc_at_best_val"}
    with pytest.raises(StudyError, match="objective_head must be fine or coarse"):
        small_cifar_config(cifar100_task, "shared_conv", objective_head="digit")


def test_batched_reruns_match_separate_fits(cifar100_task, family="shared_reuse_fine"):
    """On a GPU, reruns train the seeds as one vmapped model (study.training.batched): the reuse wiring must vmap
    too."""
    from study.training.batched import fit_batched

    config = small_cifar_config(cifar100_task, family, n_train=100, n_val=50, dropout=0.0)
    seeds = [1, 2]
    datas = [cifar100_task.draw(seed, config) for seed in seeds]
    separate = [fit({**config, "seed": seed}, data, device="cpu") for seed, data in zip(seeds, datas)]
    for alone, together in zip(separate, fit_batched(config, seeds, datas, device="cpu")):
        for a, b in zip(alone.history, together.history):
            assert set(a) == set(b)
            for name in a:
                tolerance = 1e-4 * abs(a[name]) if name.endswith("loss") else 1 / 50 + 1e-9
                assert abs(b[name] - a[name]) <= tolerance, name


# -- the preset --------------------------------------------------------------------------------------------------


def test_the_preset_holds_the_six_published_rows_with_one_stated_setup():
    presets = load_presets("cifar100_sharing")
    assert [p.family for p in presets] == ["independent_nets", "shared_conv", "reuse_coarse", "reuse_fine",
                                           "shared_reuse_coarse", "shared_reuse_fine"]
    shared = load_presets("cifar100_sharing/reuse_fine")[0]
    assert shared.published == {"test/fine_acc": (0.4914, None), "test/coarse_acc": (0.6838, None)}
    assert (shared.published_runs, shared.seeds) == (1, 5)
    common = {"epochs", "lr", "batch_size", "conv_width", "fc_width", "dropout", "augment", "n_val"}
    for key in common:
        assert len({p.config[key] for p in presets}) == 1, key  # one fixed set for all six
    assert presets[0].config["epochs"] == 100


def test_the_report_puts_ours_beside_both_published_heads(tmp_path):
    from study.infra.tracking import Tracker
    from study.report import main as report_main
    from study.runs.reruns import preset_tags

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "cifar100_sharing")
    for name, fine, coarse in (("cifar100_sharing/reuse_fine", [0.49, 0.50, 0.48], [0.68, 0.69, 0.70]),
                               ("cifar100_sharing/shared", [0.40, 0.41, 0.42], [0.64, 0.64, 0.65])):
        preset = load_presets(name)[0]
        parent = tracker.parent_run(preset.family, preset.config, preset_tags(preset),
                                    {"primary_metric": "test/fine_acc", "objective": "val/fine_acc"})
        for seed, (f, c) in enumerate(zip(fine, coarse), start=1):
            tracker.log_seed(parent, preset.family, {**preset.config, "seed": seed},
                             [{"epoch": 1, "val/fine_acc": f, "test/fine_acc": f, "test/coarse_acc": c}],
                             {"test/fine_acc_at_best_val": f, "val/fine_acc_best": f}, {})
    out = tmp_path / "report"
    assert report_main(["--experiment", "cifar100_sharing", "--tracking-uri", uri, "--out", str(out)]) == 0
    rows = {(row["preset"], row["statistic"]): row for row in csv.DictReader((out / "published.csv").open())}
    assert len(rows) == 4
    assert rows[("cifar100_sharing/reuse_fine", "test/coarse_acc")]["agrees"] == "yes"  # 68.38 within 69 ± 2 std
    assert rows[("cifar100_sharing/shared", "test/fine_acc")]["agrees"] == "no"  # 49.09 far from 41 ± 2 std
    assert float(rows[("cifar100_sharing/shared", "test/coarse_acc")]["ours_mean"]) == pytest.approx(0.64333, 1e-4)
    markdown = (out / "report.md").read_text()
    assert "| cifar100_sharing/reuse_fine | test/coarse_acc | 68.38 (one run) | 69.0 ± 1.0 |" in markdown


def test_rerun_of_the_preset_needs_the_data_and_says_so_in_one_line(tmp_path):
    done = run_in_process("study.rerun", "--preset", "cifar100_sharing", "--data-dir", str(tmp_path / "none"),
                          "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2 and "data dir" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_epoch_benchmark_runs(tmp_path):
    """benchmarks/cifar100_epoch.py --quick on CPU, so the script that times the families cannot rot."""
    from helpers import REPO, run_script_in_process

    done = run_script_in_process(REPO / "benchmarks" / "cifar100_epoch.py", "--quick", "--threads", "1",
                                 "--families", "shared_reuse_fine")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:1] == ["shared_reuse_fine"]]
    # seconds per training batch, wall clock, printed to 0.001 s: a fast machine may print 0.000
    assert len(rows) == 1 and float(rows[0][4]) >= 0
