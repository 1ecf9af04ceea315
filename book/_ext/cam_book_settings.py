"""Sphinx extension: the book's repository address, one setting for every page.

The environment variable ``CAM_BOOK_REPO_URL`` (e.g. ``https://github.com/OWNER/REPO``), read
when the book is built, is the only place the repository is named:

- set: the pages get the repository and issues buttons and the Binder/Colab launch buttons
  (``launch_buttons`` in ``_config.yml``), the tag ``cam_book_repo`` is defined (for
  ``{only} cam_book_repo`` blocks), and the ``cam-install`` directive shows
  the ``%pip install`` line for the library (``camlib[pretrained]``) and the book's code
  (``cambook``, in the ``cambook/`` folder of the repository);
- unset or empty: no launch or repository buttons, and ``cam-install`` tells readers to install
  both from their checkout.

It also gives the theme a valid default colour mode ("auto"). Without one, a first visit (no
mode saved in the browser yet) logs the console error "Got invalid theme mode".
"""

from __future__ import annotations

import os
import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError
from sphinx.util.docutils import SphinxDirective

ENV = "CAM_BOOK_REPO_URL"
TAG = "cam_book_repo"
URL = re.compile(r"^https://(github\.com|gitlab\.com|bitbucket\.org)/[\w.-]+/[\w.-]+/?$")
PROVIDERS = ("binderhub_url", "jupyterhub_url", "thebe", "colab_url", "jupyterlite_url")
BUTTONS = ("use_repository_button", "use_issues_button")


def repository_url() -> str:
    """The configured repository address, or "" when none is set."""
    url = os.environ.get(ENV, "").strip()
    if url and not URL.match(url):
        raise ConfigError(
            f"{ENV}: expected a repository address like https://github.com/OWNER/REPO "
            f"(GitHub, GitLab or Bitbucket), got {url!r}"
        )
    return url.rstrip("/")


def install_line(url: str) -> str:
    if url:
        return (f'%pip install "camlib[pretrained] @ git+{url}" '
                f'"cambook @ git+{url}#subdirectory=cambook"')
    return ('# in a terminal, in the root folder of your checkout of the book:\n'
            'python -m pip install -e ".[pretrained]" -e ./cambook')


def apply_settings(app: Sphinx, config: Config) -> None:
    url = repository_url()
    # pydata-sphinx-theme reads the colour mode from the template context, not the options
    config.html_context = {"default_mode": "auto", **(config.html_context or {})}
    options = dict(config.html_theme_options or {})
    launch = dict(options.get("launch_buttons") or {})
    if url:
        options["repository_url"] = url
        for button in BUTTONS:
            options[button] = True
        app.tags.add(TAG)
    else:
        options.pop("repository_url", None)
        for button in (*BUTTONS, "use_edit_page_button", "use_source_button"):
            options[button] = False
        launch = {key: value for key, value in launch.items() if key not in PROVIDERS}
    options["launch_buttons"] = launch
    config.html_theme_options = options
    config.cam_book_repo_url = url  # a changed address re-reads every page


class InstallDirective(SphinxDirective):
    """``cam-install``: the command that installs camlib (with its pretrained extra) and the
    book's code, cambook."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        line = install_line(repository_url())
        block = nodes.literal_block(line, line)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("cam_book_repo_url", "", "env")
    app.connect("config-inited", apply_settings, priority=900)
    app.add_directive("cam-install", InstallDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True,
            "env_version": 1}
