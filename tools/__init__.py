"""Development tooling run by the test suite (not shipped with the package).

``notebook_source``, ``binder_lint``, ``ipywidgets7_lint`` and ``colab_cell`` check the launch
files (binder/, the notebooks' Colab first cell); ``jupyterlab_driver`` runs the notebooks in
JupyterLab in Chromium. Tests import them as ``tools.<module>`` (tests/conftest.py puts the
repository root on ``sys.path``).
"""
