"""The ``nlmeans`` command line (installed as the package ``nlmeans_cli``).

The Typer application lives in :mod:`nlmeans_cli.main`; it imports the
library (NumPy, Numba, torch...) only inside the commands, so that
``nlmeans --help`` starts quickly.
"""
