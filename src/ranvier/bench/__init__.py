"""ranvier's benchmarks, shipped with the package: ``ranvier bench`` (or
``python -m ranvier.bench``) times ranvier against NumPy, PyTorch and scikit-learn side by side
on the user's own machine; ``make bench`` runs the same code (``--full``). See suite.py."""


def main(argv=None):
    """Run ``ranvier bench`` with these arguments (None: the command line); returns the exit
    status."""
    from .suite import main as run

    return run(argv)
