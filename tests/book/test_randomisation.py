"""cambook.randomisation: data randomisation (Adebayo et al.) on the synthetic
scenes."""

from __future__ import annotations

import torch

from cambook import randomisation


def test_data_randomisation_compares_two_trained_models() -> None:
    result = randomisation.data_randomisation(n_train=128, n_test=16, epochs=1)
    assert (
        result.kind == "data"
        and result.maps.shape == (16, 32, 32)
        and len(result.comparisons) == 1
    )
    assert set(result.extra) == {"true labels", "shuffled labels", "models"}
    comparison = result.comparisons[0]
    assert comparison.ssim.shape == (16,) and (comparison.ssim < 0.999).any()


def test_shuffled_labels_are_a_permutation_of_the_labels() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 2, 1, 0, 2, 3, 1])
    shuffled = randomisation.shuffle_labels(labels, seed=5)
    assert torch.equal(
        torch.bincount(shuffled, minlength=4), torch.tensor([4, 4, 3, 5])
    )
    assert sorted(shuffled.tolist()) == sorted(labels.tolist())
    assert not torch.equal(shuffled, labels)  # the order did change
    assert torch.equal(
        shuffled, randomisation.shuffle_labels(labels, seed=5)
    )  # and is reproducible


def test_small_cnn_memorises_shuffled_labels() -> None:
    """Adebayo et al.'s data randomisation needs a network that fits labels unrelated to
    the images: 16 scenes with shuffled genera, enough steps, and every label is
    learned."""
    from cambook import data, enhance

    torch.manual_seed(0)
    scenes = data.make_scenes(16, seed=7)
    views = data.downsample(scenes.float_images(), 4)
    shuffled = randomisation.shuffle_labels(scenes.labels // len(data.SPECIES), seed=1)
    untrained = enhance.SmallCNN(4).eval()
    with torch.no_grad():  # control: before training, the labels are not known
        before = (untrained(views).argmax(1) == shuffled).float().mean().item()
    model = randomisation.train_scene_model(
        views, shuffled, seed=0, epochs=80, batch_size=16, classes=4
    )
    with torch.no_grad():
        after = (model(views).argmax(1) == shuffled).float().mean().item()
    assert before < 0.9 and after >= 0.9, (before, after)
