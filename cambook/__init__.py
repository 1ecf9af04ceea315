"""cambook: the code behind The CAM Book's chapters (photos, synthetic scenes, the
chapter 4 experiment, the chapter 5 and 6 tables, figures and the explorer). It builds
on :mod:`camlib`, the library; camlib never imports it."""

__version__ = "0.2.0"
