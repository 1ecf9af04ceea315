"""Build sample submissions from the exercise notebooks: right answers, typical
mistakes, broken files.

    # (re)build the committed sample class
    python tools/make_sample_class.py coursework/sample_class

A submission starts from the student version (coursework/student/) and fills each
exercise's stub with the reference solution (from coursework/source/), with one of the
typical mistakes below, or with something broken (a syntax error, an infinite loop), or
leaves the stub; check cells can be deleted or edited and a file can be made unreadable.
tests/coursework/ and benchmarks/grading_speed.py build their classes with the same
functions, and :func:`expected_grade` says what the grader must report for each
exercise.

Each exercise has one *subtle* mistake that passes its visible checks and must be caught
by a hidden check (``caught_by``); tests/coursework/ checks that this holds for all of
them. For the reasoning exercises (1.4 to 4.4, 5.2, 6.3) a mistake is a wrong answer of
the right form.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "coursework" / "source"
STUDENT_DIR = ROOT / "coursework" / "student"
NOTEBOOKS = (
    "ex01_overview",
    "ex02_principle",
    "ex03_implementation",
    "ex04_enhanced",
    "ex05_family",
    "ex06_evaluation",
)
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("Exercise '


@dataclass(frozen=True)
class Mistake:
    body: str
    caught_by: str  # the id of the check cell that must fail
    what: str


MISTAKES: dict[str, dict[str, Mistake]] = {
    "1.1": {
        "subtle": Mistake(
            """
        top = logits.topk(k, dim=1)
        return top.indices, top.values.softmax(dim=1)
    """,
            "ex1-1-hidden",
            "softmax of the top-k logits only",
        )
    },
    "1.2": {
        "subtle": Mistake(
            """
        height = maps.shape[-2]
        flat = maps.flatten(-2).argmax(dim=-1)
        return torch.stack([flat // height, flat % height], dim=-1)
    """,
            "ex1-2-hidden",
            "divides the flat index by the height (right for square maps only)",
        )
    },
    "1.3": {
        "subtle": Mistake(
            """
        region_a, region_b = map_a >= ratio, map_b >= ratio
        return (region_a & region_b).sum(dim=(-2, -1)).float() / (region_a | \
region_b).sum(dim=(-2, -1)).float()
    """,
            "ex1-3-hidden",
            "absolute threshold instead of a fraction of the map's maximum",
        )
    },
    "2.1": {
        "subtle": Mistake(
            """
        return raw_maps.mean() + biases
    """,
            "ex2-1-hidden",
            "averages over every dimension (right for a single map only)",
        )
    },
    "2.2": {
        "subtle": Mistake(
            """
            probabilities = (features.mean(dim=(-2, -1)) @ weight.T + \
bias).softmax(dim=1)
            maps = torch.einsum("bkhw,bk->bhw", features, weight[classes])
            return probabilities.gather(1, classes[:, None])[:, :, None] * maps
        """,
            "ex2-2-hidden",
            "CAM scaled by the softmax probability (looks right once normalised)",
        ),
        "mixed": Mistake(
            """
            probabilities = (features.mean(dim=(-2, -1)) @ weight.T + \
bias).softmax(dim=1)
            return torch.einsum("bkhw,bk->bhw", features, probabilities @ weight)
        """,
            "ex2-2-check",
            "feature maps weighted by a probability-weighted mix of all classes' rows",
        ),
    },
    "2.3": {
        "subtle": Mistake(
            """
        features = features.detach().requires_grad_(True)
        with torch.enable_grad():
            chosen = head(features).gather(1, classes[:, None]).sum()
            (gradients,) = torch.autograd.grad(chosen, features)
        return (gradients * features.detach()).sum(dim=1)
    """,
            "ex2-3-hidden",
            "gradient x activation per cell instead of averaged gradients "
            "(same for a GAP head)",
        )
    },
    "3.1": {
        "subtle": Mistake(
            """
        captured = {}
        handle = feature_layer.register_forward_hook(lambda module, args, output: \
captured.update(features=output))
        with torch.no_grad():
            model(images)
        handle.remove()
        return torch.einsum("bkhw,bk->bhw", captured["features"], \
linear.weight.detach()[classes])
    """,
            "ex3-1-hidden",
            "the hook leaks when the forward pass raises (no try/finally)",
        )
    },
    "3.2": {
        "subtle": Mistake(
            """
        return {name: len(module._forward_hooks) for name, module in \
model.named_modules() if module._forward_hooks}
    """,
            "ex3-2-hidden",
            "counts forward hooks only",
        )
    },
    "3.3": {
        "subtle": Mistake(
            """
        rows, columns = torch.nonzero(cam_map >= ratio * cam_map.max(), as_tuple=True)
        return int(columns.min()), int(rows.min()), int(columns.max()) + 1, \
int(rows.max()) + 1
    """,
            "ex3-3-hidden",
            "box around all pixels above the threshold, not the largest region",
        )
    },
    "4.1": {
        "subtle": Mistake(
            """
        a, b = a.float(), b.float()
        width = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0]) + \
1).clamp(min=0)
        height = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1]) + \
1).clamp(min=0)
        intersection = width * height
        area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
        area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
        return intersection / (area_a + area_b - intersection)
    """,
            "ex4-1-hidden",
            "inclusive ends (+1), the other box convention",
        )
    },
    "4.2": {
        "subtle": Mistake(
            """
        cells, pixels = maps.shape[-1], masks.shape[-1]
        flat = maps.flatten(1).argmax(dim=1)
        x = (flat % cells) * pixels // cells
        y = (flat // cells) * pixels // cells
        return masks[torch.arange(masks.shape[0]), y, x]
    """,
            "ex4-2-hidden",
            "the corner of the peak cell instead of its centre",
        )
    },
    "4.3": {
        "subtle": Mistake(
            """
        box = camlib.zhou_boxes(cam_map, ratio).float() * (image_size / \
cam_map.shape[-1])
        x0, y0, x1, y1 = box.tolist()
        side = min(max(margin * max(x1 - x0, y1 - y0), min_side), image_size)
        left, top = (x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2
        return torch.tensor([left, top, left + side, top + side])
    """,
            "ex4-3-hidden",
            "the window is not shifted into the image near the edges",
        )
    },
    "5.1": {
        "subtle": Mistake(
            """
        return (gradients.mean(dim=(-2, -1), keepdim=True) * activations).sum(dim=1)
    """,
            "ex5-1-hidden",
            "Grad-CAM's spatially averaged gradients (the same under a GAP head)",
        )
    },
    "6.1": {
        "subtle": Mistake(
            """
        pixels = saliency.numel()
        order = torch.sort(saliency.flatten(), descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank[order] = torch.arange(pixels)
        counts = torch.tensor([s * pixels // steps for s in range(steps + 1)])
        keep = (rank[None, :] >= counts[:, None]).view(steps + 1, 1, *saliency.shape)
        scores = predict(image[None] * keep.to(image.dtype))
        return scores, float(torch.trapezoid(scores, counts.to(scores.dtype) / pixels))
    """,
            "ex6-1-hidden",
            "pixel counts floored, not rounded (right when steps divides P)",
        )
    },
    "6.2": {
        "subtle": Mistake(
            """
        ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
        ra, rb = ra - ra.mean(), rb - rb.mean()
        return float((ra * rb).sum() / (ra.square().sum() * rb.square().sum()).sqrt())
    """,
            "ex6-2-hidden",
            "ordinal ranks: ties do not share their average rank",
        )
    },
    # the conceptual exercises: answers of the right form, one part wrong
    "1.4": {
        "subtle": Mistake(
            """
        answer_1_4 = {"gap": 4.605, "shift": "A", "sharpen": "B"}
    """,
            "ex1-4-hidden",
            "solves 1 / (1 + 100 e^-d) = 1/2: the top class among the others",
        )
    },
    "2.4": {
        "subtle": Mistake(
            """
        answer_2_4 = {"map": [[2.5, -1.5], [-5, 2]], "score": -0.75,
                      "gradcam": [[2.5, -1.5], [-5, 2]]}
    """,
            "ex2-4-hidden",
            "Grad-CAM taken for CAM itself, without the factor 1/(hw)",
        )
    },
    "3.4": {
        "subtle": Mistake(
            """
        answer_3_4 = {"relu_box": (1, 1, 3, 3), "signed_box": (1, 0, 4, 3), "hooks": 0}
    """,
            "ex3-4-hidden",
            "believes a hook goes when the function that registered it raises",
        )
    },
    "4.4": {
        "subtle": Mistake(
            """
            answer_4_4 = {"side": 90, "flat": "A", "centre": "B"}
        """,
            "ex4-4-hidden",
            "rounds the side sqrt(0.5) x 128 = 90.5 down",
        ),
        "guess": Mistake(
            """
            answer_4_4 = {"side": 91, "flat": "C", "centre": "C"}
        """,
            "ex4-4-hidden",
            "the number right, the choices guessed",
        ),
    },
    "5.2": {
        "subtle": Mistake(
            """
        answer_5_2 = {"factor": 64, "hirescam": [[0.5, 0.75], [1.25, 0.5]],
                      "gradcam": [[0.5, 0.75], [1.25, 0.5]], "agree": "B"}
    """,
            "ex5-2-hidden",
            "HiResCAM worked out with the mean gradient: Grad-CAM's map twice",
        )
    },
    "6.3": {
        "subtle": Mistake(
            """
        answer_6_3 = {"drop": -7.5, "increase": 50, "auc": 0.35, "ones": "C"}
    """,
            "ex6-3-hidden",
            "average drop without max(0, .): a gain offsets a drop",
        )
    },
}

BROKEN = {
    # a syntax error makes the whole cell fail, so the function is never defined
    "syntax": 'print("almost done"\n',
    # the function never returns: the first check that calls it hits the cell timeout
    "loop": "while True:\n    pass\n",
}


@dataclass(frozen=True)
class Plan:
    """One submitted notebook. ``answers``: exercise -> ``right`` (the default),
    ``stub`` (left as handed out), ``syntax``, ``loop``, or a mistake name of
    :data:`MISTAKES` (``subtle``, ...)."""

    answers: dict[str, str] = field(default_factory=dict)
    delete_checks: tuple[
        str, ...
    ] = ()  # exercises whose visible check cells are deleted
    edit_checks: tuple[
        str, ...
    ] = ()  # exercises whose visible checks are emptied (restored by the grader)
    unreadable: bool = False  # the file is cut short: not valid JSON


def exercises_of(notebook: str) -> list[str]:
    meta = json.loads((STUDENT_DIR / f"{notebook}.ipynb").read_text(encoding="utf-8"))[
        "metadata"
    ]
    return [exercise["id"] for exercise in meta["coursework"]["exercises"]]


def reference_bodies(notebook: str) -> dict[str, str]:
    """Exercise -> the reference solution's code between the markers, dedented."""
    source = nbformat.read(SOURCE_DIR / f"{notebook}.ipynb", as_version=4)
    bodies = {}
    for cell in source.cells:
        tags = cell.metadata.get("tags", [])
        if "solution" not in tags:
            continue
        exercise = next(
            t[len("exercise-") :] for t in tags if t.startswith("exercise-")
        )
        lines = cell.source.split("\n")
        start = next(i for i, line in enumerate(lines) if line.strip() == BEGIN)
        stop = next(i for i, line in enumerate(lines) if line.strip() == END)
        bodies[exercise] = textwrap.dedent("\n".join(lines[start + 1 : stop])) + "\n"
    return bodies


def body_for(notebook: str, exercise: str, answer: str) -> str | None:
    if answer == "right":
        return reference_bodies(notebook)[exercise]
    if answer == "stub":
        return None
    if answer in BROKEN:
        if answer == "syntax":
            return BROKEN["syntax"] + reference_bodies(notebook)[exercise]
        return BROKEN[answer]
    return textwrap.dedent(MISTAKES[exercise][answer].body).strip("\n") + "\n"


def submission(notebook: str, plan: Plan) -> str:
    """The text of the submitted notebook file."""
    nb = nbformat.read(STUDENT_DIR / f"{notebook}.ipynb", as_version=4)
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        exercise = next(
            (t[len("exercise-") :] for t in tags if t.startswith("exercise-")), None
        )
        if "solution" in tags:
            body = body_for(notebook, exercise, plan.answers.get(exercise, "right"))
            if body is not None:
                lines = []
                for line in cell.source.split("\n"):
                    if line.strip().startswith(STUB):
                        indent = line[: len(line) - len(line.lstrip())]
                        lines += [
                            indent + part if part else part
                            for part in body.rstrip("\n").split("\n")
                        ]
                    else:
                        lines.append(line)
                cell.source = "\n".join(lines)
        if "check" in tags and exercise in plan.delete_checks:
            continue
        if "check" in tags and exercise in plan.edit_checks:
            cell.source = "pass  # the check was here"
        cells.append(cell)
    nb.cells = cells
    text = nbformat.writes(nb) + "\n"
    return text[: len(text) // 2] if plan.unreadable else text


ALL_EXERCISES = [
    f"{chapter}.{number}" for chapter in range(1, 7) for number in range(1, 5)
]

# A class of seven: every kind of answer and of breakage the grader must handle.
SAMPLE_CLASS: dict[str, dict[str, Plan]] = {
    "ada": {name: Plan() for name in NOTEBOOKS},  # everything right
    "ben": {
        name: Plan({e: "stub" for e in ALL_EXERCISES}) for name in NOTEBOOKS
    },  # handed in the notebooks untouched
    "chloe": {  # typical mistakes, among them the softmax one
        "ex01_overview": Plan({"1.1": "subtle"}),
        "ex02_principle": Plan({"2.2": "subtle"}),
        "ex03_implementation": Plan({"3.1": "subtle"}),
        "ex04_enhanced": Plan({"4.1": "subtle"}),
        "ex05_family": Plan(),
        "ex06_evaluation": Plan({"6.2": "subtle"}),
    },
    # a syntax error, an infinite loop, one exercise not attempted, one notebook missing
    "dev": {
        "ex01_overview": Plan({"1.2": "syntax"}),
        "ex02_principle": Plan({"2.3": "loop"}),
        "ex03_implementation": Plan({"3.3": "stub"}),
    },
    "eve": {  # deleted and edited check cells
        "ex01_overview": Plan(edit_checks=("1.1",), delete_checks=("1.3",)),
        "ex02_principle": Plan(),
        "ex03_implementation": Plan(delete_checks=("3.2",)),
        "ex04_enhanced": Plan({"4.2": "subtle", "4.3": "stub"}),
        "ex05_family": Plan({"5.1": "subtle"}),
        "ex06_evaluation": Plan(),
    },
    "finn": {  # an unreadable file and more mistakes
        "ex01_overview": Plan(unreadable=True),
        "ex02_principle": Plan({"2.1": "subtle", "2.2": "mixed"}),
        "ex03_implementation": Plan({"3.2": "subtle", "3.3": "subtle"}),
        "ex04_enhanced": Plan({"4.3": "subtle", "4.4": "guess"}),
        "ex05_family": Plan(),
        "ex06_evaluation": Plan({"6.1": "subtle"}),
    },
    # every exercise with its subtle mistake: each must be caught by a hidden check
    "gus": {name: Plan({e: "subtle" for e in ALL_EXERCISES}) for name in NOTEBOOKS},
}


def expected_grade(
    plans: dict[str, Plan], notebook: str, exercise: str
) -> tuple[str, str]:
    """``(status, what the message or check id must contain)`` the grader must
    report."""
    plan = plans.get(notebook)
    if plan is None:
        return "failed", "not submitted"
    if plan.unreadable:
        return "errored", "cannot be read"
    if exercise in plan.delete_checks:
        return "failed", "deleted"
    answer = plan.answers.get(exercise, "right")
    if answer == "right":
        return "passed", ""
    if answer == "stub":
        return "errored", "NotImplementedError"
    if answer == "syntax":
        return "errored", "SyntaxError"
    if answer == "loop":
        return "errored", "timed out"
    return "failed", MISTAKES[exercise][answer].caught_by


def build_class(folder: Path, plans_by_student: dict[str, dict[str, Plan]]) -> None:
    """Write ``folder/<student>/<notebook>.ipynb`` for every plan."""
    for student, plans in plans_by_student.items():
        (folder / student).mkdir(parents=True, exist_ok=True)
        for notebook, plan in plans.items():
            (folder / student / f"{notebook}.ipynb").write_text(
                submission(notebook, plan), encoding="utf-8"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write the class (replaced)")
    args = parser.parse_args(argv)
    if args.folder.exists():
        shutil.rmtree(args.folder)
    build_class(args.folder, SAMPLE_CLASS)
    count = sum(len(plans) for plans in SAMPLE_CLASS.values())
    print(
        f"make_sample_class: {len(SAMPLE_CLASS)} students, {count} notebooks "
        f"in {args.folder}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
