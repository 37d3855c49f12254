"""History: what ``fit`` returns, as Keras's: per-epoch metrics and a plot of them."""


class History:
    """What ``fit`` returns, as Keras: ``history.history["loss"]`` is the per-epoch mean training loss;
    ``"accuracy"`` is there for classifiers. ``history.epoch`` lists the epoch indices."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.epoch_time = []

    def _record(self, epoch, seconds, **metrics):
        self.epoch.append(epoch)
        self.epoch_time.append(seconds)
        for k, v in metrics.items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key):
        return self.history[key]

    def plot(self, path=None, title=None):
        """Draw loss and accuracy per epoch (training and validation) with matplotlib; saves a PNG
        to ``path`` when given. Returns the matplotlib Figure."""
        try:
            import matplotlib

            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib "
                              "(or pip install 'ranvier[plot]')") from None
        if not self.epoch:
            raise ValueError("History.plot: nothing to plot, no epoch was recorded")
        panels = [("loss", "Loss")] + ([("accuracy", "Accuracy")]
                                      if "accuracy" in self.history else [])
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        for ax, (key, label) in zip(axes[0], panels):
            ax.plot(epochs, self.history[key], "o-", label="training", color="tab:blue")
            if f"val_{key}" in self.history:
                ax.plot(epochs, self.history[f"val_{key}"], "s--", label="validation",
                        color="tab:orange")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label.lower())
            ax.set_title(label)
            ax.grid(True, alpha=0.3)
            ax.legend()
            if len(epochs) <= 20:
                ax.set_xticks(epochs)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig

    def __repr__(self):
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"
