"""A hand-written NumPy MLP (ReLU hidden layers, softmax cross-entropy, SGD with momentum or Adam):
the baseline a user would write without a framework. Same maths and layout as ranvier's Dense
(weights (out, in)), so both can start from the same weights."""
import numpy as np


class NumpyMLP:
    def __init__(self, weights, biases, lr=0.05, momentum=0.9, optimizer="sgd",
                 betas=(0.9, 0.999), eps=1e-8):
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        self.W = [w.copy() for w in weights]
        self.b = [b.copy() for b in biases]
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.lr, self.momentum, self.steps = lr, momentum, 0
        self.optimizer, self.betas, self.eps = optimizer, betas, eps
        if optimizer == "adam":  # second moments; the first moments reuse vW / vb
            self.sW = [np.zeros_like(w) for w in self.W]
            self.sb = [np.zeros_like(b) for b in self.b]

    def forward(self, x):
        acts = [x]
        for i, (w, b) in enumerate(zip(self.W, self.b)):
            z = acts[-1] @ w.T + b
            if i < len(self.W) - 1:
                z = np.maximum(z, 0)
            acts.append(z)
        return acts

    def train_step(self, x, y):
        acts = self.forward(x)
        logits = acts[-1]
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        n = x.shape[0]
        loss = -np.log(p[np.arange(n), y]).mean()
        g = p
        g[np.arange(n), y] -= 1
        g /= n
        for i in range(len(self.W) - 1, -1, -1):
            gW = g.T @ acts[i]
            gb = g.sum(axis=0)
            if i > 0:
                g = (g @ self.W[i]) * (acts[i] > 0)
            if self.optimizer == "adam":
                self._adam(self.W[i], self.vW[i], self.sW[i], gW)
                self._adam(self.b[i], self.vb[i], self.sb[i], gb)
                continue
            for p_, v, gr in ((self.W[i], self.vW[i], gW), (self.b[i], self.vb[i], gb)):
                if self.steps == 0:
                    v[...] = gr
                else:
                    v *= self.momentum
                    v += gr
                p_ -= self.lr * v
        self.steps += 1
        return loss

    def _adam(self, p, m, v, g):
        """Adam (Kingma and Ba; PyTorch's formulation) for one array, in place."""
        b1, b2 = self.betas
        t = self.steps + 1
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        denom = np.sqrt(v)
        denom /= np.sqrt(1 - b2 ** t)
        denom += self.eps
        p -= (self.lr / (1 - b1 ** t)) * (m / denom)

    def epoch(self, X, y, batch_size, rng):
        order = rng.permutation(len(X))
        for s in range(0, len(X), batch_size):
            idx = order[s:s + batch_size]
            self.train_step(X[idx], y[idx])

    def accuracy(self, X, y):
        return float(np.mean(self.forward(X)[-1].argmax(axis=1) == y))
