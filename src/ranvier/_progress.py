"""Per-epoch progress for ``fit(verbose=...)``, as Keras: 1 = a progress bar (tqdm when installed,
imported only then), 2 = one line per epoch, 0 = silent."""
import sys


class EpochProgress:
    def __init__(self, verbose, epoch, epochs, steps):
        self.verbose = verbose
        self.prefix = f"Epoch {epoch + 1}/{epochs}"
        self.bar = None
        if verbose == 1 and steps > 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # no tqdm: fall back to the one-line summary
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=steps, desc=self.prefix, unit="batch", leave=True,
                                file=sys.stdout, dynamic_ncols=True, mininterval=0.2)

    def update(self, loss):
        if self.bar is not None:
            self.bar.update(1)

    def close(self, seconds, metrics):
        shown = " - ".join(f"{k}: {v:.4f}" for k, v in metrics.items())
        if self.bar is not None:
            self.bar.set_postfix_str(shown, refresh=False)
            self.bar.close()
        elif self.verbose:
            print(f"{self.prefix} - {seconds:.2f}s - {shown}", file=sys.stdout, flush=True)
