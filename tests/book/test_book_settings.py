"""book/_ext/cam_book_settings.py: one repository setting decides buttons and install
line."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "book" / "_ext"))
import cam_book_settings as settings  # noqa: E402

LAUNCH = {
    "notebook_interface": "classic",
    "binderhub_url": "https://mybinder.org",
    "colab_url": "https://colab.research.google.com",
}


def configured(monkeypatch, url: str | None):
    if url is None:
        monkeypatch.delenv(settings.ENV, raising=False)
    else:
        monkeypatch.setenv(settings.ENV, url)
    tags = set()
    app = SimpleNamespace(tags=SimpleNamespace(add=tags.add))
    config = SimpleNamespace(
        html_theme_options={
            "launch_buttons": dict(LAUNCH),
            "repository_branch": "main",
        },
        html_context={},
        cam_book_repo_url="",
    )
    settings.apply_settings(app, config)
    return config, tags


def test_unset_means_no_buttons_and_an_install_from_the_checkout(monkeypatch) -> None:
    config, tags = configured(monkeypatch, None)
    options = config.html_theme_options
    assert "repository_url" not in options and not tags
    assert (
        options["use_repository_button"] is False
        and options["use_issues_button"] is False
    )
    assert options["launch_buttons"] == {
        "notebook_interface": "classic"
    }  # no provider left
    assert config.html_context["default_mode"] == "auto"
    line = settings.install_line("")
    assert 'pip install -e ".[pretrained]" -e ./cambook' in line and "checkout" in line
    assert "git+" not in line


def test_set_means_buttons_and_a_git_install_with_the_pretrained_extra(
    monkeypatch,
) -> None:
    config, tags = configured(monkeypatch, "https://github.com/someone/cam-book/")
    options = config.html_theme_options
    assert options["repository_url"] == "https://github.com/someone/cam-book"
    assert (
        options["use_repository_button"] is True and options["launch_buttons"] == LAUNCH
    )
    assert (
        tags == {settings.TAG} and config.cam_book_repo_url == options["repository_url"]
    )
    assert settings.install_line(settings.repository_url()) == (
        '%pip install "camlib[pretrained] @ git+https://github.com/someone/cam-book" '
        '"cambook @ git+https://github.com/someone/cam-book#subdirectory=cambook"'
    )


def test_a_malformed_address_is_a_clear_error(monkeypatch) -> None:
    from sphinx.errors import ConfigError

    monkeypatch.setenv(settings.ENV, "github.com/someone")
    with pytest.raises(
        ConfigError,
        match=r"expected a repository address like https://github.com/OWNER/REPO",
    ):
        settings.repository_url()


def test_code_a_reader_sees_fits_the_page() -> None:
    """Visible code cells of the chapters and the library code they include
    (literalinclude with :pyobject:) keep to 88 characters a line, so the page does not
    clip them."""
    import ast
    import json
    import re

    root = Path(__file__).resolve().parents[2]
    long = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        for number, cell in enumerate(json.loads(path.read_text())["cells"]):
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and "remove-cell" not in cell[
                "metadata"
            ].get("tags", []):
                long += [
                    (path.name, number, line)
                    for line in source.splitlines()
                    if len(line) > 88
                ]
            for module, name in re.findall(
                r"```\{literalinclude\} \.\./(\S+)\n:pyobject: (\w+)", source
            ):
                text = (root / module).read_text()
                node = next(
                    n for n in ast.parse(text).body if getattr(n, "name", None) == name
                )
                lines = text.splitlines()[node.lineno - 1 : node.end_lineno]
                long += [(module, name, line) for line in lines if len(line) > 88]
    assert not long, long
