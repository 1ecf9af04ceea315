"""The synthetic data set and cambook.enhance: ground truth, crop geometry, metrics, bad
input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cambook import data, enhance


@pytest.fixture(scope="module")
def scenes() -> data.Scenes:
    return data.make_scenes(64, seed=3)


def test_scenes_are_deterministic_in_the_seed() -> None:
    a, b, c = (
        data.make_scenes(8, seed=1),
        data.make_scenes(8, seed=1),
        data.make_scenes(8, seed=2),
    )
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_boxes_are_the_extent_of_the_masks(scenes) -> None:
    for mask, box in zip(scenes.masks, scenes.boxes.tolist()):
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert box == [
            cols.min().item(),
            rows.min().item(),
            cols.max().item() + 1,
            rows.max().item() + 1,
        ]
        x0, y0, x1, y1 = box
        # a disc of radius 9..13 plus a 3-px ring: 24..32 px across, give or take the
        # pixel grid
        assert 22 <= x1 - x0 <= 34 and abs((x1 - x0) - (y1 - y0)) <= 1


def test_masks_cover_the_drawn_object_and_the_label_matches_what_is_drawn(
    scenes,
) -> None:
    for image, mask, label in zip(scenes.images, scenes.masks, scenes.labels.tolist()):
        genus, species = divmod(label, 2)
        ring_colour = (
            (torch.tensor(data.RING_COLOURS[genus]) * 255).round().to(torch.uint8)
        )
        ring_pixels = (image == ring_colour[:, None, None]).all(0)
        assert (
            ring_pixels.sum() > 0
            and (ring_pixels & ~mask).sum() <= (ring_pixels & mask).sum() * 0.05
        )
        # inside the disc: grey stripes 0.15 / 0.85, constant along rows (horizontal) or
        # columns
        grey = image[0].float() / 255
        core = mask.clone()
        core = (
            core
            & torch.roll(core, 4, 0)
            & torch.roll(core, -4, 0)
            & torch.roll(core, 4, 1)
            & torch.roll(core, -4, 1)
        )
        values = grey[core]
        assert (
            ((values - 0.15).abs() < 0.01)
            .logical_or((values - 0.85).abs() < 0.01)
            .all()
        )
        ys, xs = core.nonzero(as_tuple=True)
        along = (
            grey[ys, (xs + 1).clamp(max=127)]
            if species == 0
            else grey[(ys + 1).clamp(max=127), xs]
        )
        inside = (
            core[ys, (xs + 1).clamp(max=127)]
            if species == 0
            else core[(ys + 1).clamp(max=127), xs]
        )
        assert torch.equal(along[inside], grey[ys, xs][inside]), (
            f"stripes of {data.SCENE_CLASSES[label]} run the wrong way"
        )


def test_stripes_vanish_in_the_global_view(scenes) -> None:
    """Every 4 x 4 block fully inside a disc averages to the same grey, whatever the
    species."""
    images = scenes.float_images()
    low = data.downsample(images, 4)
    discs = data.downsample(scenes.masks[:, None].float(), 4)[:, 0] == 1
    # blocks touching the ring take some of its colour; blocks of pure stripes are grey
    # in all channels
    grey_blocks = (
        (low[:, 0] - low[:, 1]).abs().lt(1e-3)
        & (low[:, 1] - low[:, 2]).abs().lt(1e-3)
        & discs
    )
    assert grey_blocks.sum() > 100
    assert ((low[:, 0][grey_blocks] - 0.5).abs() < 0.01).all()


def test_crop_of_a_planted_square_lands_in_the_right_place() -> None:
    image = torch.zeros(2, 3, 64, 80)
    image[:, :, 20:30, 37:47] = 1.0  # rows 20..29, columns 37..46
    exact = enhance.crop(
        image,
        torch.tensor([[37.0, 20.0, 47.0, 30.0], [27.0, 10.0, 57.0, 40.0]]),
        size=10,
    )
    assert torch.equal(exact[0], torch.ones(3, 10, 10))
    # a 30-px window with the square in its middle third, shrunk to 10 px: the middle
    # 3-4 px are bright
    middle = exact[1, 0]
    assert (
        middle[4:6, 4:6].min() > 0.99
        and middle[0, :].max() == 0
        and middle[:, 0].max() == 0
    )


def test_square_windows_stay_inside_and_keep_their_centre_when_possible() -> None:
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 66.0], [100.0, 110.0, 128.0, 128.0]]
    )
    windows = enhance.square_windows(boxes, 128, margin=1.5, min_side=24)
    sides = windows[:, 2:] - windows[:, :2]
    torch.testing.assert_close(sides[:, 0], sides[:, 1])
    torch.testing.assert_close(sides[:, 0], torch.tensor([24.0, 30.0, 42.0]))
    assert (windows[:, :2] >= 0).all() and (windows[:, 2:] <= 128).all()
    torch.testing.assert_close(
        windows[1], torch.tensor([45.0, 43.0, 75.0, 73.0])
    )  # centre (60, 58) kept


def test_control_windows_have_the_requested_sides() -> None:
    sides = torch.tensor([20.0, 40.0, 128.0])
    centred = enhance.centred_windows(sides, 128)
    torch.testing.assert_close(centred[:, 2] - centred[:, 0], sides)
    torch.testing.assert_close(
        (centred[:, 0] + centred[:, 2]) / 2, torch.full((3,), 64.0)
    )
    random = enhance.random_windows(sides, 128, torch.Generator().manual_seed(0))
    torch.testing.assert_close(random[:, 2] - random[:, 0], sides)
    assert (random[:, :2] >= 0).all() and (random[:, 2:] <= 128).all()


def test_peak_windows_are_centred_on_the_maximum() -> None:
    maps = torch.zeros(1, 32, 32)
    maps[0, 10, 20] = 1.0
    torch.testing.assert_close(
        enhance.peak_windows(maps, 8), torch.tensor([[16.5, 6.5, 24.5, 14.5]])
    )


@pytest.mark.parametrize(
    "boxes, pattern",
    [
        (
            torch.tensor([[5.0, 5.0, 5.0, 9.0]]),
            r"x1 > x0 and y1 > y0, got empty boxes at rows \[0\]",
        ),
        (torch.tensor([[-1.0, 0.0, 5.0, 5.0]]), r"inside the 16x16 image"),
        (torch.tensor([[0.0, 0.0, 17.0, 5.0]]), r"inside the 16x16 image"),
        (
            torch.tensor([[0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 5.0, 5.0]]),
            r"one box per image \(1\), got 2",
        ),
        (torch.tensor([0.0, 0.0, 5.0, 5.0]), r"tensor \[N, 4\].*got \(4,\)"),
    ],
)
def test_crop_rejects_bad_boxes(boxes: torch.Tensor, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        enhance.crop(torch.zeros(1, 3, 16, 16), boxes, size=8)


def test_crop_rejects_integer_images() -> None:
    with pytest.raises(ValueError, match=r"float tensor \[N, C, H, W\].*torch.uint8"):
        enhance.crop(
            torch.zeros(1, 3, 16, 16, dtype=torch.uint8),
            torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
            4,
        )


def test_training_rejects_mismatched_batches() -> None:
    with pytest.raises(ValueError, match=r"same count, got 4 and 3"):
        enhance.train_classifier(
            enhance.SmallCNN(2),
            torch.zeros(4, 3, 8, 8),
            torch.zeros(3, dtype=torch.long),
            enhance.Config(),
        )


def test_localisation_metrics_on_hand_made_maps() -> None:
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[:, 16:32, 16:32] = True
    boxes = torch.tensor([[16, 16, 32, 32]] * 2)
    maps = torch.zeros(2, 32, 32)
    maps[0, 8:16, 8:16] = 1.0  # exactly on the object (map cells are 2 x 2 pixels)
    maps[1, 24:28, 24:28] = 1.0  # somewhere else
    result = enhance.localisation(
        maps, boxes, masks, torch.tensor([True, False]), ratio=0.5
    )
    assert result == {"gt_known": 0.5, "top1": 0.5, "pointing": 0.5, "mean_iou": 0.5}


def test_command_line_runs_a_tiny_experiment_and_writes_json(tmp_path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cambook.enhance",
            "--seed",
            "0",
            "--epochs",
            "1",
            "--stage2-epochs",
            "1",
            "--n-train",
            "256",
            "--n-test",
            "128",
            "--device",
            "cpu",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["seeds"] == [0]
    table = results["summary"]
    assert (
        "accuracy: CAM box crop" in table
        and "localisation: Zhou threshold (0.2)" in table
    )
    # one key whatever ratio a seed validates, so seeds that validate different ones
    # summarise
    assert "localisation: validated threshold" in table
    for policy in enhance.POLICIES:  # each policy: its own network and the shared one
        assert set(table[f"accuracy: {policy}"]) == {
            "crop",
            "fused",
            "shared crop",
            "shared fused",
        }
    # the CAM policy's own network is the shared one
    cam = table["accuracy: CAM box crop"]
    assert cam["crop"]["mean"] == cam["shared crop"]["mean"]
    for metrics in table.values():
        for value in metrics.values():
            assert value["mean"] != value["mean"] or 0.0 <= value["mean"] <= 1.0
    assert "accuracy: CAM box crop" in done.stdout


# Training is chaotic in float rounding: seed 1 run with 1 thread instead of the file's
# 2, on the same machine, moved single accuracies by up to 0.038 (measured); other CPUs
# round differently again. A stale file (other settings, changed code) moves them
# further.
SHIPPED_TOLERANCE = 0.06


def test_shipped_seeds_reproduce() -> None:
    """Chapter 4 runs seed 0 and reads seeds 1 and 2 from
    cambook/results/enhance_seeds.json, written by ``python -m cambook.enhance --seed 1
    2 --json ...``. Seed 1 rerun here with the default settings must give what the file
    says (up to float differences between machines: a few hundredths), so the file
    cannot go stale when the experiment's code changes."""
    from importlib.resources import files

    path = files("cambook").joinpath("results/enhance_seeds.json")
    shipped = json.loads(path.read_text())
    assert [run["config"]["seed"] for run in shipped["runs"]] == [1, 2]
    assert {"command", "date", "machine", "versions"} <= set(shipped["meta"])
    saved = shipped["runs"][0]
    threads = torch.get_num_threads()
    torch.set_num_threads(shipped["meta"]["threads"])  # as the file was made
    try:
        fresh = enhance.run_experiment(enhance.Config(seed=1)).to_dict()
    finally:
        torch.set_num_threads(threads)
    fresh = json.loads(json.dumps(fresh))
    assert fresh["config"] == saved["config"]
    compared = 0
    for section in ("accuracy", "localisation"):
        assert set(fresh[section]) == set(saved[section])
        for policy, row in saved[section].items():
            for metric, value in row.items():
                mine = fresh[section][policy][metric]
                if value != value:  # NaN: a metric that does not apply
                    assert mine != mine, (section, policy, metric)
                    continue
                assert abs(mine - value) <= SHIPPED_TOLERANCE, (
                    section,
                    policy,
                    metric,
                    mine,
                    value,
                )
                compared += 1
    assert compared >= 25  # every accuracy and localisation figure that applies
    assert (
        abs(fresh["peak_side"] - saved["peak_side"]) <= 4
    )  # pixels of a 128-pixel scene
    assert (
        len(fresh["stage1_attempts"]) == 1
    )  # learned at once: the rule changed nothing
    for mine, theirs in zip(fresh["threshold_curve"], saved["threshold_curve"]):
        assert mine["ratio"] == theirs["ratio"]
        assert abs(mine["gt_known"] - theirs["gt_known"]) <= SHIPPED_TOLERANCE


def _members(seed: int, count: int = 3) -> list[enhance.SmallCNN]:
    torch.manual_seed(seed)
    nets = [enhance.SmallCNN(5, (4, 6, 8, 8)) for _ in range(count)]
    for net in nets:  # non-trivial batch-norm statistics, so eval mode uses them
        for module in net.features:
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return nets


def test_grouped_network_equals_its_members_run_one_by_one() -> None:
    members = _members(0)
    grouped = enhance.GroupedCNN(members).eval()
    inputs = [
        torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(i))
        for i in range(3)
    ]
    logits = grouped(torch.cat(inputs, dim=1))
    assert logits.shape == (4, 3, 5)
    for group, (member, images) in enumerate(zip(members, inputs)):
        torch.testing.assert_close(
            logits[:, group], member.eval()(images), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(
            grouped.member(group)(images), member(images), rtol=1e-5, atol=1e-5
        )


def test_training_the_grouped_network_trains_each_member_as_if_alone() -> None:
    """Same data order, same optimiser: the grouped run ends where three separate runs
    end."""
    config = enhance.Config(epochs=2, batch_size=8, learning_rate=1e-2)
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(24, 3, 16, 16, generator=generator) for _ in range(3)]
    labels = torch.randint(0, 5, (24,), generator=generator)
    grouped = enhance.train_classifier(
        enhance.GroupedCNN(_members(2)), torch.cat(inputs, dim=1), labels, config
    )
    alone = [
        enhance.train_classifier(net, images, labels, config)
        for net, images in zip(_members(2), inputs)
    ]
    probe = torch.randn(6, 3, 16, 16, generator=generator)
    for group, net in enumerate(alone):
        trained = grouped.member(group)
        torch.testing.assert_close(
            trained.fc.weight, net.fc.weight, rtol=1e-4, atol=1e-5
        )
        torch.testing.assert_close(trained(probe), net(probe), rtol=1e-4, atol=1e-4)
    # and training moved them: the members are no longer their initial selves
    assert not torch.allclose(alone[0].fc.weight, _members(2)[0].fc.weight)


def test_the_training_step_cam_equals_explain_cam_in_eval_mode() -> None:
    net = _members(3, 1)[0].eval()
    views = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    classes = torch.tensor([0, 3, 1, 4])
    mine = enhance.step_cam(net, net.features(views), classes, 32)
    torch.testing.assert_close(mine, enhance.cam_maps(net, views, classes, 32))
    # by hand for one image: sum over channels of w^c_k f_k, ReLU, upsampled, min-max
    # scaled
    features = net.features(views)[1]
    raw = (net.fc.weight[3][:, None, None] * features).sum(0).clamp_min(0)
    scaled = torch.nn.functional.interpolate(
        raw[None, None], size=(32, 32), mode="bilinear"
    )[0, 0]
    scaled = (scaled - scaled.min()) / (scaled.max() - scaled.min())
    torch.testing.assert_close(mine[1], scaled, rtol=1e-5, atol=1e-5)


def test_policy_windows_share_the_cam_windows_sides() -> None:
    config = enhance.Config()
    maps = torch.zeros(2, 32, 32)
    maps[0, 4, 6], maps[1, 20, 25] = 1.0, 1.0
    cam = torch.tensor([[0.0, 0.0, 40.0, 40.0], [60.0, 60.0, 90.0, 90.0]])
    boxes = torch.tensor([[10, 10, 40, 40], [70, 70, 98, 98]])
    windows = enhance.policy_windows(
        maps, cam, boxes, 32.0, config, torch.Generator().manual_seed(0)
    )
    assert tuple(windows) == enhance.POLICIES
    for name in ("centre crop (same size)", "random crop (same size)"):
        torch.testing.assert_close(
            windows[name][:, 2] - windows[name][:, 0], torch.tensor([40.0, 30.0])
        )
    # peak windows: 32 px wide around the peak cell's centre (map cells are 4 px)
    torch.testing.assert_close(
        windows["CAM peak window"],
        torch.tensor([[10.0, 2.0, 42.0, 34.0], [86.0, 66.0, 118.0, 98.0]]),
    )
    # oracle: the true box (30 and 28 px), 1.25 times as wide, centred on it
    torch.testing.assert_close(
        windows["oracle crop (true box)"],
        torch.tensor([[6.25, 6.25, 43.75, 43.75], [66.5, 66.5, 101.5, 101.5]]),
    )


def test_square_windows_in_a_wide_image_use_each_axis_bound() -> None:
    boxes = torch.tensor([[300.0, 10.0, 340.0, 50.0], [0.0, 0.0, 400.0, 100.0]])
    windows = enhance.square_windows(boxes, (100, 400), margin=1.0, min_side=10)
    torch.testing.assert_close(
        windows, torch.tensor([[300.0, 10.0, 340.0, 50.0], [150.0, 0.0, 250.0, 100.0]])
    )


# --- stage 1's restart rule ---------------------------------------------------------


def _tiny_stage1_data(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    views = torch.rand(48, 3, 8, 8, generator=generator)
    labels = torch.randint(0, len(data.SCENE_CLASSES), (48,), generator=generator)
    # identical validation images, labels spread evenly over the eight classes: whatever
    # a network learned, it gives them one class, so it scores exactly 1/8 (bound: 2/8)
    blank = torch.zeros(16, 3, 8, 8)
    spread = torch.arange(16) % len(data.SCENE_CLASSES)
    return views, labels, blank, spread


def test_the_restart_rule_restarts_a_stage1_that_scores_chance() -> None:
    """Cost: three one-epoch trainings of a tiny network on 48 images (a second)."""
    config = enhance.Config(
        epochs=1, batch_size=16, widths=(4, 4, 4, 4), stage1_restarts=2
    )
    views, labels, blank, spread = _tiny_stage1_data()
    torch.manual_seed(0)
    net, attempts = enhance.train_stage1(
        views, labels, blank, spread, config, torch.device("cpu")
    )
    assert attempts == [0.125, 0.125, 0.125]  # 1 + stage1_restarts attempts, at chance
    assert enhance.learned_bound(config) == 0.25  # twice chance, eight classes
    assert isinstance(net, enhance.SmallCNN)


def test_the_first_attempt_is_the_plain_training_run() -> None:
    """A seed whose stage 1 learns at once is not changed by the rule: its network is
    the one train_classifier gives from the same initial state (here the bound is 0, so
    the first attempt passes)."""
    config = enhance.Config(
        epochs=1, batch_size=16, widths=(4, 4, 4, 4), learned_factor=0.0
    )
    views, labels, blank, spread = _tiny_stage1_data(1)
    torch.manual_seed(7)
    net, attempts = enhance.train_stage1(
        views, labels, blank, spread, config, torch.device("cpu")
    )
    torch.manual_seed(7)
    plain = enhance.SmallCNN(len(data.SCENE_CLASSES), config.widths)
    plain = plain.to(memory_format=torch.channels_last)
    enhance.train_classifier(plain, enhance.channels_last(views), labels, config)
    assert len(attempts) == 1
    for mine, theirs in zip(net.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(mine, theirs)


def test_the_command_line_says_when_stage1_did_not_learn() -> None:
    config = enhance.Config()
    failed = enhance._stage1_message(7, [0.13, 0.12, 0.14], config)
    assert "WARNING: stage 1 did not learn" in failed and "3 attempts" in failed
    restarted = enhance._stage1_message(7, [0.13, 0.51], config)
    assert "restarted" in restarted and "WARNING" not in restarted
    assert "learned" in enhance._stage1_message(7, [0.5], config)


def _stage1_check() -> dict:
    from importlib.resources import files

    path = files("cambook").joinpath("results/stage1_seeds.json")
    return json.loads(path.read_text())


def test_the_stage1_check_file_covers_thirty_fresh_seeds_that_all_learned() -> None:
    """Read-only (cost: reading a small JSON file). Chapter 4 quotes this file; it was
    written by ``python -m cambook.enhance --stage1-only --seed 100 ... 129 --json ...``
    and the slow test below reruns it."""
    check = _stage1_check()
    seeds = check["seeds"]
    assert len(seeds) >= 30 and seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    assert seeds[0] > 11  # the settings were chosen on seeds 0-11
    assert [row["seed"] for row in check["runs"]] == seeds
    assert check["bound"] == enhance.learned_bound(enhance.Config())
    for row in check["runs"]:
        assert row["attempts"][-1] >= check["bound"], row
        assert all(a < check["bound"] for a in row["attempts"][:-1]), row
        assert row["global_view_test"] > 0.4, row  # the genus, on the test scenes


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("CAM_BOOK_STAGE1_SEEDS"),
    reason="reruns stage 1 on 30 seeds (about 10 minutes on 2 quiet"
    " cores); set CAM_BOOK_STAGE1_SEEDS=1 to run it",
)
def test_stage1_learns_on_every_checked_seed_when_rerun() -> None:
    """Not part of the default run (skipped unless CAM_BOOK_STAGE1_SEEDS is set):
    stage 1, trained as run_experiment trains it, learns on every seed of the file,
    after as many attempts as the file records."""
    check = _stage1_check()
    threads = torch.get_num_threads()
    torch.set_num_threads(check["meta"]["threads"])
    try:
        for row in check["runs"]:
            fresh = enhance.check_stage1(enhance.Config(seed=row["seed"]))
            assert fresh["attempts"][-1] >= check["bound"], fresh
            assert len(fresh["attempts"]) == len(row["attempts"]), (fresh, row)
    finally:
        torch.set_num_threads(threads)


def test_paired_points_and_the_gain_rule_by_hand() -> None:
    """Paired differences in points, the global view read in its fused column, and the
    rule: positive on every seed, mean above the standard deviation. Milliseconds."""
    whole = "global view (stage 1)"
    runs = [
        {
            "accuracy": {
                "box": {"crop": 0.90},
                "centre": {"crop": 0.60},
                whole: {"fused": 0.50},
            }
        },
        {
            "accuracy": {
                "box": {"crop": 0.80},
                "centre": {"crop": 0.45},
                whole: {"fused": 0.52},
            }
        },
    ]
    box = enhance.paired_points(runs, "box", "centre")
    assert box.tolist() == pytest.approx([30.0, 35.0])
    centre = enhance.paired_points(runs, "centre", whole)
    assert centre.tolist() == pytest.approx([10.0, -7.0])
    assert enhance.clears_bar(box)  # mean 32.5, s.d. about 3.5
    assert not enhance.clears_bar(centre)  # negative on one seed
    assert not enhance.clears_bar(torch.tensor([1.0, 9.0]))  # mean 5 < s.d. 5.7
