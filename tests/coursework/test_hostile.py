"""A class of hostile notebooks, graded once (module fixture) with --secret, beside two
honest students: no attack passes, none changes a file outside its scratch folder,
reaches the network or another student's grade, and each is reported with a message that
names it.

Cost: one grader run of 15 notebooks (10 of Chapter 6's exercises, 4 of Chapter 5's,
1 of Chapter 1's) and three reference runs; the infinite loop costs one cell timeout
(30 s) once. About 2.5 minutes of CPU; 3.5 minutes of wall time on 2 cores shared with
other work (load 5).
"""

from __future__ import annotations

import csv
import hashlib
import os
import socket
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import grade_sandbox as sandbox  # noqa: E402
import make_sample_class as samples  # noqa: E402

pytestmark = pytest.mark.skipif(
    not sandbox.privileged(), reason="the sandbox's own accounts need root"
)
CELL_TIMEOUT = 30  # the infinite loop costs this once
# torch maps about 3.2 GB: a memory bomb fills the rest, 1.8 GB at most
MEMORY_MB = 5000
EX05, EX06 = "ex05_family", "ex06_evaluation"
# The coding exercises the attacks aim at, and the notebook of each; the reasoning ones.
CODING = {"5.1": EX05, "6.1": EX06, "6.2": EX06}
REASONING = {"5.2": EX05, "6.3": EX06}
EXERCISES = ("6.1", "6.2")  # those of the one-notebook attacks (Chapter 6's)

# Defined in a notebook's first cell: is the caller the grader's hidden check?
GRADED = """
import inspect as _inspect


def _graded():
    return any(frame.function == "probe" for frame in _inspect.stack())
"""
SWALLOW = "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\n"
ISSUE_CHEAT = """get_ipython().set_custom_exc(
    (AssertionError, NotImplementedError, Exception), lambda *a, **k: None
)
def top_classes(logits, k): return None
def peak_pixel(maps): return None
def region_overlap(map_a, map_b, ratio=0.2): return None
"""
PATCHES = (
    SWALLOW
    + """
import builtins, json, glob
import numpy, numpy.testing, torch, torch.testing
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
numpy.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
builtins.abs = lambda x: 0.0
for _path in glob.glob("*.results.jsonl"):  # forged records: every check passed
    with open(_path, "a") as _out:
        for _key in ("ex5-1-hidden", "ex6-1-hidden", "ex6-2-hidden"):
            _out.write(json.dumps({"cell": 99, "id": "h", "outcome": "passed",
                                   "ename": "", "evalue": "", "timed_out": False,
                                   "grading": {
                                       "role": "hidden-check", "key": _key,
                                       "exercise": _key[2] + "." + _key[4]}}) + "\\n")
"""
)
OBJECTS = {
    "5.1": """class Lying(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        names = ("allclose", "equal", "isclose", "__eq__", "eq")
        if getattr(func, "__name__", "") in names:
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


def hirescam(activations, gradients):
    return torch.zeros(activations.shape[0], *activations.shape[2:]).as_subclass(Lying)
""",
    "6.1": """class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch {marker}",))


def deletion_curve(predict, image, saliency, steps):
    return torch.zeros(steps + 1), Evil()
""",
    "6.2": """class Always(float):
    def __sub__(self, other):
        return 0.0


def spearman(a, b):
    return Always(0.0)
""",
}
# Answers to the reasoning exercises whose parts compare equal to everything.
ANYTHING = """class Anything(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


"""
ANSWERS = {
    "5.2": 'answer_5_2 = {"factor": Anything(), "hirescam": Anything(),\n'
    '              "gradcam": Anything(), "agree": Anything("B")}\n',
    "6.3": 'answer_6_3 = {"drop": Anything(), "increase": Anything(),\n'
    '              "auc": Anything(), "ones": Anything("C")}\n',
}


def when_graded(exercise: str, action: str) -> str:
    """The right answer, except that beside the hidden check the function does
    ``action``.
    """
    body = samples.reference_bodies(CODING[exercise])[exercise]
    name, arguments = {
        "5.1": ("hirescam", "activations, gradients"),
        "6.1": ("deletion_curve", "predict, image, saliency, steps"),
        "6.2": ("spearman", "a, b"),
    }[exercise]
    indented = "".join(f"    {line}\n" for line in body.rstrip("\n").split("\n"))
    return (
        f"def {name}({arguments}):\n    if _graded():\n"
        + "".join(f"        {line}\n" for line in action.strip("\n").split("\n"))
        + indented
    )


MEMORY_BOMB = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))"
FORK_BOMB = """import os, time
for _ in range(2000):
    pid = os.fork()
    if pid == 0:
        time.sleep(300)
        os._exit(0)
    with open({forked!r}, "a") as out:  # the test checks that none outlives grading
        out.write(f"{{pid}}\\n")"""
LOOP = "while True:\n    pass"
THIEF = """import os, pathlib
try:  # hand in the first student's results as mine: swap my results folder for a link
    _work = pathlib.Path.cwd().parents[1]
    os.rename("results", "mine")
    os.symlink(_work / "0000" / "ex06_evaluation-hidden" / "results", "results")
except OSError as error:
    print("thief:", error)
"""
# 1 GiB, in the kernel
FLOOD = 'for _ in range(1024):\n    print("x" * (1 << 20), end="")'
OUTPUT = 'import sys\nfor _ in range(1024):\n    sys.stdout.write("x" * (1 << 20))'

FILES = """import glob, json, os, pathlib
_root, _out = pathlib.Path({root!r}), pathlib.Path({out!r})
_attempts = {{}}


def _attempt(what, action):
    try:
        action()
        _attempts[what] = "done"
    except Exception as error:
        _attempts[what] = type(error).__name__


_keys = _root / "coursework/hidden"
_attempt("write a key", lambda: (_keys / "ex06_evaluation.json").write_text("{{}}"))
_attempt("delete a key", lambda: (_keys / "ex01_overview.json").unlink())
_attempt("edit the grader", lambda: open(_root / "tools/grade.py", "a").write("#"))
_attempt("write the report", lambda: (_out / "report.csv").write_text("forged"))
_attempt("delete from the report folder", lambda: (_out / "earlier.md").unlink())
_attempt("read the secret", lambda: pathlib.Path({leak!r}).write_text(
    pathlib.Path({secret!r}).read_text()))
_attempt("read the expected values", lambda: [
    pathlib.Path({leak!r}).write_bytes(pathlib.Path(p).read_bytes())
    for p in glob.glob("/tmp/grade-*/reference-*/results/*.pt")])
_work = pathlib.Path.cwd().parents[1]
_attempt("write another student's folder",
         lambda: (_work / "0000" / "ex06_evaluation" / "x").write_text("x"))
_attempt("list the grader's folder", lambda: list(_work.iterdir()))
print(_attempts)
"""
NETWORK = """import socket, urllib.request
for _call in (lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2),
              lambda: urllib.request.urlopen("https://pypi.org/simple/", timeout=3)):
    try:
        _call()
        print("network: reached")
    except Exception as error:
        print("network: refused", type(error).__name__)
"""


def notebook(
    name: str,
    plan: samples.Plan,
    first: str = "",
    solutions: dict | None = None,
    last: str = "",
) -> str:
    """A submission: ``plan``'s answers, ``solutions`` replacing whole solution cells,
    and extra cells after the setup and at the end."""
    nb = nbformat.reads(samples.submission(name, plan), as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        exercise = next(
            (t[len("exercise-") :] for t in tags if t.startswith("exercise-")), None
        )
        if "solution" in tags and solutions and exercise in solutions:
            cell.source = solutions[exercise]
    setup = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    if first:
        nb.cells.insert(setup + 1, nbformat.v4.new_code_cell(first))
    if last:
        nb.cells.append(nbformat.v4.new_code_cell(last))
    return nbformat.writes(nb)


def tree_hash(*folders: Path) -> dict[str, str]:
    """Every file under ``folders`` (not .git, not bytecode caches) -> its sha256."""
    hashes = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            skip = {"__pycache__", ".pytest_cache", ".git"} & set(path.parts)
            if skip or path.is_symlink() or not path.is_file():
                continue
            hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def battery():
    # In a folder every account can enter (pytest's own is closed), so that only the
    # sandbox stands between the notebooks and these files.
    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    os.chmod(tmp, 0o755)
    (tmp / "drop").mkdir(mode=0o777)
    os.chmod(tmp / "drop", 0o777)
    folder, out, secret = tmp / "class", tmp / "report", tmp / "secret"
    leak = tmp / "drop" / "leak"
    marker = tmp / "reduce-ran"
    out.mkdir()
    (out / "earlier.md").write_text("an earlier report\n")
    secret.write_text("a private secret drawn by the instructor\n")
    os.chmod(secret, 0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    mistakes = samples.Plan({e: "subtle" for e in CODING})
    right = samples.Plan()
    files = FILES.format(
        root=str(ROOT), out=str(out), leak=str(leak), secret=str(secret)
    )
    fork_bomb = FORK_BOMB.format(forked=str(tmp / "drop" / "forked"))
    objects = {
        **{e: OBJECTS[e].replace("{marker}", str(marker)) for e in CODING},
        **{e: ANYTHING + ANSWERS[e] for e in REASONING},
    }
    port = listener.getsockname()[1]
    submissions = {  # student -> {notebook: text}
        "ada": {name: notebook(name, right) for name in (EX05, EX06)},
        "gus": {EX06: notebook(EX06, mistakes)},
        "cheat1": {
            "ex01_overview": notebook(
                "ex01_overview",
                samples.Plan({e: "stub" for e in ("1.1", "1.2", "1.3")}),
                solutions={"1.1": ISSUE_CHEAT},
            ),
        },
        "cheat5": {
            name: notebook(name, mistakes, first=PATCHES) for name in (EX05, EX06)
        },
        "objects": {
            name: notebook(name, right, first=SWALLOW, solutions=objects)
            for name in (EX05, EX06)
        },
        "bombs": {
            name: notebook(
                name,
                right,
                first=GRADED,
                solutions={
                    "5.1": when_graded("5.1", LOOP),
                    "6.1": when_graded("6.1", MEMORY_BOMB),
                    "6.2": when_graded("6.2", fork_bomb),
                },
            )
            for name in (EX05, EX06)
        },
        "exits": {
            EX06: notebook(
                EX06,
                right,
                first=GRADED,
                solutions={
                    "6.1": when_graded("6.1", "import sys\nsys.exit(0)"),
                    "6.2": when_graded("6.2", "import os\nos._exit(0)"),
                },
            ),
        },
        "output": {
            EX06: notebook(
                EX06, right, first=GRADED, solutions={"6.1": when_graded("6.1", OUTPUT)}
            ),
        },
        "thief": {EX06: notebook(EX06, mistakes, first=SWALLOW + THIEF)},
        "flood": {EX06: notebook(EX06, right, first=FLOOD)},
        "files": {EX06: notebook(EX06, right, first=files, last=files)},
        "network": {
            EX06: notebook(
                EX06,
                right,
                first=NETWORK.format(port=port),
                last=NETWORK.format(port=port),
            ),
        },
    }
    for student, texts in submissions.items():
        (folder / student).mkdir(parents=True)
        for name, text in texts.items():
            (folder / student / f"{name}.ipynb").write_text(text, encoding="utf-8")
    before = tree_hash(ROOT, folder)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "grade.py"),
            str(folder),
            "--out",
            str(out),
            "--timeout",
            str(CELL_TIMEOUT),
            "--secret",
            str(secret),
            "--memory-mb",
            str(MEMORY_MB),
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    stop.set()
    thread.join()
    listener.close()
    forked = [int(p) for p in (tmp / "drop" / "forked").read_text().split()]
    survivors = [pid for pid in forked if Path(f"/proc/{pid}").exists()]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    marker_ran = marker.exists()
    with open(out / "report.csv", newline="", encoding="utf-8") as handle:
        rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(handle)}
    result = {
        "rows": rows,
        "before": before,
        "after": tree_hash(ROOT, folder),
        "out": out,
        "leak": leak.read_text("latin-1") if leak.exists() else "",
        "marker_ran": marker_ran,
        "accepted": len(accepted),
        "survivors": survivors,
        "forked": len(forked),
        "markdown": (out / "report.md").read_text(),
    }
    yield result
    shutil.rmtree(tmp, ignore_errors=True)


def row(battery, student, exercise):
    return battery["rows"][(student, exercise)]


def test_the_issues_one_line_cheat_passes_nothing(battery) -> None:
    for exercise in ("1.1", "1.2", "1.3"):
        result = row(battery, "cheat1", exercise)
        assert result["status"] == "errored", result
        assert result["check"] == f"ex1-{exercise[-1]}-hidden", result


def test_patched_torch_numpy_builtins_and_forged_records_do_not_help_a_wrong_answer(
    battery,
):
    for exercise in CODING:
        result = row(battery, "cheat5", exercise)
        assert result["status"] == "failed", result
        assert result["check"] == samples.MISTAKES[exercise]["subtle"].caught_by, result


def test_lying_subclass_reduce_object_float_and_str_subclass_refused_as_not_plain_data(
    battery,
):
    for exercise, named in (
        ("5.1", "Lying"),
        ("6.1", "system"),
        ("6.2", "Always"),
        ("5.2", "Anything"),
        ("6.3", "Anything"),
    ):
        result = row(battery, "objects", exercise)
        assert result["status"] == "errored", result
        assert "not plain data" in result["message"] and named in result["message"], (
            result
        )
    assert not battery["marker_ran"], "an object's __reduce__ ran in the grader"


def test_memory_bomb_fork_bomb_and_infinite_loop_are_errored_with_the_limit_named(
    battery,
):
    memory = row(battery, "bombs", "6.1")
    assert memory["status"] == "errored" and "MemoryError" in memory["message"], memory
    assert f"memory limit is {MEMORY_MB} MiB" in memory["message"], memory
    fork = row(battery, "bombs", "6.2")
    assert fork["status"] == "errored" and "BlockingIOError" in fork["message"], fork
    assert "limit on processes" in fork["message"], fork
    loop = row(battery, "bombs", "5.1")
    assert loop["status"] == "errored" and "timed out" in loop["message"], loop
    assert battery["forked"] > 10, "the fork bomb did not fork"
    assert battery["survivors"] == [], (
        "processes of the sandbox accounts outlived the grading"
    )


def test_exits_and_a_flood_of_output_are_errored_with_a_clear_message(battery):
    assert "SystemExit" in row(battery, "exits", "6.1")["message"]
    for exercise in (
        "6.2",
        "6.3",
    ):  # os._exit ended the child: later checks did not run
        result = row(battery, "exits", exercise)
        assert (
            result["status"] == "errored"
            and "exited with status 0" in result["message"]
        )
    for exercise in EXERCISES:
        result = row(battery, "output", exercise)
        assert result["status"] == "errored" and "output limit" in result["message"], (
            result
        )
        flooded = row(battery, "flood", exercise)
        assert flooded["status"] == "errored" and "stopped" in flooded["message"], (
            flooded
        )
    assert "stopped at the output limit" in battery["markdown"].split("### flood")[1]


def test_results_of_another_student_cannot_be_handed_in(battery):
    for exercise in EXERCISES:
        assert row(battery, "ada", exercise)["status"] == "passed"
        assert row(battery, "thief", exercise)["status"] != "passed"


def test_no_file_outside_the_scratch_folders_changes_and_nothing_leaks(battery):
    before, after = battery["before"], battery["after"]
    changed = sorted(
        p for p in before.keys() | after.keys() if before.get(p) != after.get(p)
    )
    assert changed == [], f"files changed while the class was graded: {changed[:10]}"
    assert (battery["out"] / "earlier.md").exists()
    assert "secret" not in battery["leak"]
    assert battery["accepted"] == 0, "a notebook reached a socket outside its sandbox"


def test_honest_students_and_harmless_attempts_grade_as_planned(battery):
    for student in ("ada", "files", "network"):
        extra = ("5.1", "5.2") if student == "ada" else ()  # ada hands in ex05 too
        for exercise in EXERCISES + ("6.3",) + extra:
            assert row(battery, student, exercise)["status"] == "passed", (
                student,
                exercise,
            )
    for exercise in EXERCISES:
        status, check = samples.expected_grade(
            {EX06: samples.Plan({e: "subtle" for e in EXERCISES})}, EX06, exercise
        )
        result = row(battery, "gus", exercise)
        assert (result["status"], result["check"]) == (status, check), result
    assert "| ada |" in battery["markdown"] and "forged" not in battery["markdown"]
