"""ranvier's benchmarks, shipped with the package: ``ranvier bench`` (or
``python -m ranvier.bench``) times ranvier against NumPy, PyTorch and scikit-learn side by side
on the user's own machine; ``make bench`` runs the same code (``--full``). See suite.py."""


def main(argv=None, own_process=None):
    """Run ``ranvier bench`` with these arguments (None: the command line); returns the exit
    status. ``own_process`` (default: whether argv is None, i.e. started as a program): the
    process may re-execute itself without OpenBLAS's CPU overrides (see suite.main)."""
    from .suite import main as run

    return run(argv, own_process=argv is None if own_process is None else own_process)
