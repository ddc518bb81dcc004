"""Output plumbing shared by every package: how files, pages, cells and plots are written.

The bottom layer: it imports no project package, so ``envs`` and ``dataset`` can use it as
well as ``experiments``. One job per module, imported by name (this file imports none of them,
so ``import artifacts.atomic`` does not pull in matplotlib):

* :mod:`artifacts.atomic`: crash-safe writes (a temporary name, fsync, one rename);
* :mod:`artifacts.markdown_block`: a generated block between two marker comments of a page;
* :mod:`artifacts.markdown_table`: markdown table rows;
* :mod:`artifacts.cells`: percentage and interval cells of tables;
* :mod:`artifacts.formats`: the ``format`` / ``format_version`` check of a file;
* :mod:`artifacts.plots`: figures saved atomically, and the success-per-iteration plot.
"""
