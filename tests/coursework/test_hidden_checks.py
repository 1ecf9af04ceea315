"""The hidden checks' machinery without the sandbox: what counts as plain data, the
loader, the seeds drawn from a secret, and every planted mistake caught on private
inputs too.

Cost: about 40 s of CPU (each notebook's setup once, each hidden check twice: the checks
of 2.1 and 2.2 load EfficientNet-Lite0 and run the book's photos); the rest, the
verdicts of the reasoning exercises on forged and guessed answers among them,
about 1 s.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections import OrderedDict
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import grade  # noqa: E402
import grade_hidden as hidden  # noqa: E402
import make_sample_class as samples  # noqa: E402


class Lying(torch.Tensor):
    """A tensor whose comparisons always hold."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("allclose", "equal", "__eq__", "eq"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


class Marker:
    """Unpickling it would create a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_plain_data_is_accepted_as_it_is() -> None:
    value = {"a": [torch.arange(3), (1, 2.5, True, None, "x")], 7: torch.zeros(2, 2)}
    assert hidden.plain(value) is value


@pytest.mark.parametrize(
    "value, named",
    [
        (torch.zeros(3).as_subclass(Lying), "Lying"),
        (torch.nn.Parameter(torch.zeros(2)), "Parameter"),
        (np.zeros(3), "ndarray"),
        (np.float64(1.0), "float64"),
        (OrderedDict(a=1), "OrderedDict"),
        ({(1, 2): 3}, "dict key of type tuple"),
        ([torch.zeros(2, 2).to_sparse()], "sparse"),
        (type("F", (float,), {})(1.0), "F"),
    ],
)
def test_anything_else_is_refused_with_its_type_named(value, named) -> None:
    with pytest.raises(hidden.NotPlain, match=named):
        hidden.plain(value)


def test_loader_refuses_subclasses_and_reduce_objects_without_running_them(
    tmp_path,
) -> None:
    marker = tmp_path / "ran"
    torch.save({"x": Marker(marker)}, tmp_path / "reduce.pt")
    with pytest.raises(hidden.NotPlain, match="the global getattr"):
        hidden.load(tmp_path / "reduce.pt", 1 << 20)
    assert not marker.exists()
    with open(tmp_path / "plain-pickle.pt", "wb") as handle:  # not even a torch file
        pickle.dump(Marker(marker), handle)
    with pytest.raises(hidden.NotPlain):
        hidden.load(tmp_path / "plain-pickle.pt", 1 << 20)
    assert not marker.exists()
    torch.save([torch.ones(2).as_subclass(Lying)], tmp_path / "lying.pt")
    with pytest.raises(
        hidden.NotPlain, match="Lying"
    ):  # __main__.Lying or this module's
        hidden.load(tmp_path / "lying.pt", 1 << 20)
    torch.save(torch.zeros(1000), tmp_path / "big.pt")
    with pytest.raises(hidden.NotPlain, match="bytes"):
        hidden.load(tmp_path / "big.pt", 1000)
    torch.save({"t": torch.arange(4), "n": 3}, tmp_path / "fine.pt")
    loaded = hidden.load(tmp_path / "fine.pt", 1 << 20)
    assert type(loaded["t"]) is torch.Tensor and loaded["t"].tolist() == [0, 1, 2, 3]


def test_seeds_are_public_without_a_secret_and_drawn_from_it_otherwise() -> None:
    key = grade.load_keys()["ex01_overview"]
    checks = [h["id"] for e in key["exercises"] for h in e["hidden_checks"]]
    assert hidden.seeds(key, None) == {check: None for check in checks}
    first, again = hidden.seeds(key, b"one secret"), hidden.seeds(key, b"one secret")
    other = hidden.seeds(key, b"another secret")
    assert first == again and set(first) == set(checks)
    assert len(set(first.values())) == len(checks)  # each check its own inputs
    assert all(first[c] != other[c] for c in checks)
    assert all(0 <= seed < 2**31 for seed in first.values())


def mistaken_cell(notebook: str, exercise: str, answer: str = "subtle") -> str:
    submitted = nbformat.reads(
        samples.submission(notebook, samples.Plan({exercise: answer})), as_version=4
    )
    return next(
        c.source
        for c in submitted.cells
        if {"solution", f"exercise-{exercise}"} <= set(c.metadata.get("tags", []))
    )


@pytest.mark.parametrize("notebook", samples.NOTEBOOKS)
def test_every_planted_mistake_is_caught_on_private_inputs(notebook) -> None:
    """With inputs drawn from a secret, each subtle mistake still fails the hidden check
    meant for it, and the reference passes every hidden check (trial checks that)."""
    key = grade.load_keys()[notebook]
    private = hidden.seeds(key, b"a secret for this test only")
    mistakes = {e["id"]: mistaken_cell(notebook, e["id"]) for e in key["exercises"]}
    verdicts = hidden.trial(
        key, ROOT / key["source"], mistakes, private
    )  # raises if the
    for exercise in key["exercises"]:  # reference fails a check on its own results
        caught_by = samples.MISTAKES[exercise["id"]]["subtle"].caught_by
        outcome, name, message = verdicts[caught_by]
        assert (outcome, name) == ("error", "AssertionError"), (
            exercise["id"],
            verdicts,
        )
        assert message.startswith(f"Exercise {exercise['id']}:"), message


def test_children_that_run_student_code_see_only_the_kept_variables(
    monkeypatch,
) -> None:
    """One environment for both children (the notebook's and the hidden checks'): a
    token in the grader's environment does not reach student code."""
    import grade_sandbox as sandbox

    monkeypatch.setenv("GRADER_TOKEN", "do-not-leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = sandbox.child_env(["/a", "/b"], 3)
    assert "GRADER_TOKEN" not in env and env["LANG"] == "C.UTF-8"
    assert env["PYTHONPATH"] == os.pathsep.join(["/a", "/b"])
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert set(env) <= set(sandbox.KEPT_ENV) | {
        "PYTHONPATH",
        "MPLBACKEND",
        "PYTHONDONTWRITEBYTECODE",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
    }


# --- the reasoning exercises: plain answers, judged exactly ---------------------------


def conceptual(notebook: str) -> tuple[str, dict, str]:
    """``(hidden check source, the reference's probe result, exercise id)`` of a
    notebook's conceptual exercise, computed here: its probe needs the answer and
    nothing else of the notebook."""
    key = grade.load_keys()[notebook]
    bodies = samples.reference_bodies(notebook)
    exercise = next(  # the one whose solution writes answer_<n>_<m>
        e["id"] for e in key["exercises"] if f"answer_{e['id'][0]}_" in bodies[e["id"]]
    )
    source = next(
        h["source"]
        for e in key["exercises"]
        if e["id"] == exercise
        for h in e["hidden_checks"]
    )
    scope = {"__name__": "reference"}
    exec(samples.reference_bodies(notebook)[exercise], scope)  # noqa: S102 - trusted
    exec(compile(source, "hidden", "exec"), scope)  # noqa: S102 - the key's code
    return source, hidden.plain(scope["probe"]()), exercise


def with_answer(want: dict, **parts) -> dict:
    return {**want, "answer": {**want["answer"], **parts}}


def judged(source: str, got: dict, want: dict) -> tuple[str, str, str]:
    return hidden.judge(source, got, want)


@pytest.mark.parametrize("notebook", samples.NOTEBOOKS)
def test_each_notebook_has_a_conceptual_exercise_whose_reference_is_the_computed_value(
    notebook,
) -> None:
    """The reference's literal answers equal the values the probe computes from the
    task's numbers (judging the reference against itself compares the two)."""
    source, want, exercise = conceptual(notebook)
    assert set(want["answer"]) == set(want["expected"]), exercise
    assert judged(source, want, want) == ("passed", "", "")


@pytest.mark.parametrize("notebook", samples.NOTEBOOKS)
def test_conceptual_answers_of_the_wrong_type_or_shape_do_not_pass(notebook) -> None:
    """Exact types: a bool for a number, a string for a number, a float for an int, a
    lower-case letter, a tensor, a missing or an extra part: each fails with a message
    that names the exercise."""
    source, want, exercise = conceptual(notebook)
    answer, expected = want["answer"], want["expected"]
    first = next(iter(answer))
    forgeries = [
        dict(answer, extra=1),
        {k: v for k, v in answer.items() if k != first},
        list(answer.items()),
    ]
    for part, value in answer.items():
        kind = type(expected[part])  # the form the task asks for
        if kind is str:
            forgeries.append(dict(answer, **{part: value.lower()}))
            forgeries.append(dict(answer, **{part: [value]}))
        elif kind is int:
            forgeries.append(dict(answer, **{part: float(value)}))
            forgeries.append(dict(answer, **{part: str(value)}))
        elif kind is float:
            forgeries.append(dict(answer, **{part: str(value)}))
            forgeries.append(dict(answer, **{part: torch.tensor(value)}))
            forgeries.append(dict(answer, **{part: float("nan")}))
        else:  # a box or a map
            forgeries.append(dict(answer, **{part: torch.tensor(value)}))
            forgeries.append(dict(answer, **{part: list(value)[:-1]}))
    if {type(v) for v in answer.values()} & {int, float}:
        forgeries.append(
            {k: (v == v) if type(v) in (int, float) else v for k, v in answer.items()}
        )  # True for every number
    for forged in forgeries:
        outcome, name, message = judged(source, {**want, "answer": forged}, want)
        assert outcome == "error" and message.startswith(f"Exercise {exercise}:"), (
            forged,
            message,
        )


@pytest.mark.parametrize("notebook", samples.NOTEBOOKS)
def test_a_guess_passes_rarely(notebook) -> None:
    """With the numbers right, exactly one of all the combinations of letters passes;
    with every number off by twice its tolerance, none does. The numbers count as right
    within the tolerance the task states."""
    import itertools

    source, want, exercise = conceptual(notebook)
    expected, tolerance = want["expected"], want["tolerance"]
    choices = [part for part, value in expected.items() if type(value) is str]
    numbers = [part for part, value in expected.items() if type(value) is float]
    letters = "ABCD"
    passing = 0
    for combination in itertools.product(letters, repeat=len(choices)):
        got = with_answer(want, **dict(zip(choices, combination)))
        passing += judged(source, got, want)[0] == "passed"
    assert passing == 1, (exercise, passing)
    for part in numbers:
        step = tolerance.get(part, 0.01)
        near = with_answer(want, **{part: expected[part] + 0.9 * step})
        assert judged(source, near, want)[0] == "passed", (exercise, part)
        far = with_answer(want, **{part: expected[part] + 2 * step})
        outcome, _, message = judged(source, far, want)
        assert outcome == "error" and part in message, (exercise, part, message)
    every_number_off = with_answer(
        want, **{p: expected[p] + 2 * tolerance.get(p, 0.01) for p in numbers}
    )
    integers = [p for p, v in expected.items() if type(v) is int]
    every_number_off["answer"].update({p: expected[p] + 1 for p in integers})
    boxes = [p for p, v in expected.items() if type(v) in (list, tuple)]
    for part in boxes:  # one value of each box or map off
        value = list(expected[part])
        value[0] = (
            value[0] + 1 if type(value[0]) is int else [value[0][0] + 1, value[0][1]]
        )
        every_number_off["answer"][part] = value
    if numbers or integers or boxes:
        for combination in itertools.product(letters, repeat=len(choices)):
            got = {
                **every_number_off,
                "answer": {
                    **every_number_off["answer"],
                    **dict(zip(choices, combination)),
                },
            }
            assert judged(source, got, want)[0] == "error", (exercise, combination)
