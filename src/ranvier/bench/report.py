"""Render the suite's results (results.json) as Markdown tables and a PNG chart.

The suite calls this after a run; ``python -m ranvier.bench.report results.json`` re-renders
saved results next to the file.
"""
import json
import math
import os
import sys

from ._common import write_text

LIB_NAMES = {"ranvier": "ranvier", "numpy": "NumPy", "torch": "PyTorch", "sklearn": "scikit-learn",
             "ranvier_f32": "ranvier float32"}
COLORS = {"ranvier": "#d62728", "numpy": "#1f77b4", "torch": "#ff7f0e", "sklearn": "#2ca02c",
          "copy": "#7f7f7f"}


_MODES = {"quick": "quick (smoke test: tiny sizes and repeats, not for conclusions)",
          "default": "default (`ranvier bench`: MLP products at batch 128, one MNIST-shaped "
                     "epoch; run `--full` for the whole suite)",
          "full": "full"}


def _x(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}x"


def _rate(t, key, digits=1):
    """'median (min-max)' of a rate stored as key, key_min, key_max."""
    if not t:
        return "-"
    return f"{t[key]:.{digits}f} ({t[key + '_min']:.{digits}f}-{t[key + '_max']:.{digits}f})"


def _secs(t, digits=3, scale=1.0):
    """'median (min-max)' of a timing record, times ``scale`` (1e3: milliseconds)."""
    if not t:
        return "-"
    return (f"{t['median'] * scale:.{digits}f} ({t['min'] * scale:.{digits}f}-"
            f"{t['max'] * scale:.{digits}f})")


def geomean(vals):
    vals = [v for v in vals if v]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def _notes(sec):
    return "\n".join(f"- {n}" for n in sec.get("notes", []))


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine_md(res):
    m, cfg = res.get("machine", {}), res.get("config", {})
    v = m.get("versions", {})
    blas = m.get("blas")
    if isinstance(blas, list):  # NumPy's own BLAS first (its file lives under numpy*/)
        blas = sorted(blas, key=lambda b: "numpy" not in str(b.get("filepath", "")))
        blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                         f"{b.get('threading_layer')}"
                         + (", NumPy's" if "numpy" in str(b.get("filepath", "")) else
                            f", {os.path.basename(str(b.get('filepath')))}") + ")"
                         for b in blas) or "none found"
    cpu = m.get("cpu_detail") or {}
    caches = ", ".join(f"{k} {v // 1024} KiB" for k, v in cpu.get("caches", {}).items())
    lines = [
        f"- CPU: {m.get('cpu')} ({m.get('cores')} logical cores); ranvier GEMM ISA: "
        f"{m.get('ranvier_isa')}",
    ]
    if cpu:
        lines.append(f"- CPU kind: {cpu.get('kind')} (family {cpu.get('family')}, model "
                     f"{cpu.get('model')}); flags: {' '.join(cpu.get('flags', []))}; caches: "
                     f"{caches or 'unknown'}")
    lines += [
        f"- ranvier {m.get('ranvier')}, Python {m.get('python')}, NumPy {v.get('numpy')}, "
        f"PyTorch {v.get('torch')}, scikit-learn {v.get('sklearn')}, threadpoolctl "
        f"{v.get('threadpoolctl')}",
        f"- NumPy's BLAS (threadpoolctl): {blas}",
        f"- Threads compared: {', '.join(map(str, cfg.get('threads', [])))}; mode: "
        + _MODES.get(cfg.get("mode") or ("quick" if cfg.get("quick") else "full")),
        f"- Run: {cfg.get('started')}, {cfg.get('wall_s', 0):.0f} s wall; load average before the "
        f"run {cfg.get('loadavg_start')}, after {cfg.get('loadavg_end')}",
    ]
    if m.get("dropped_env"):
        lines.append(f"- Dropped for a fair NumPy: {m['dropped_env']}")
    if m.get("kept_env"):
        lines.append(f"- OpenBLAS overrides in effect (NumPy may be slower than it can be): "
                     f"{m['kept_env']}")
    if cfg.get("note"):
        lines.append(f"- **Note:** {cfg['note']}")
    la = cfg.get("loadavg_start")
    if la and m.get("cores") and la[0] > 0.5 * m["cores"]:
        lines.append("- **Warning:** the machine was busy when the run started (load average "
                     f"{la[0]:.1f} on {m['cores']} cores): timings, 2-thread ones above all, are "
                     "noisy.")
    return "\n".join(lines)


def gemm_md(g):
    rows = g["rows"]
    libs = [l for l in ("numpy", "torch") if any(r.get(l) for r in rows)]
    parts = ["Ratios are ranvier's GFLOP/s over the other's: above 1, ranvier is faster."]
    summ = []
    for dt in sorted({r["dtype"] for r in rows}):
        for nt in sorted({r["threads"] for r in rows}):
            for kind, label in (("mlp", "MLP products"), ("square", "squares"),
                                ("dense", "dense+relu")):
                sel = [r for r in rows if r["dtype"] == dt and r["threads"] == nt
                       and r["kind"] == kind]
                if not sel:
                    continue
                summ.append([dt, nt, f"{label} ({len(sel)})"]
                            + [_x(geomean([r.get(f"ratio_vs_{l}") for r in sel])) for l in libs])
    parts.append("Geometric means of the ratios:\n\n"
                 + _table(["dtype", "threads", "shapes"] + [f"ranvier/{LIB_NAMES[l]}"
                                                            for l in libs], summ))
    body = []
    for r in rows:
        name = r["name"] + (f" B={r['batch']}" if r["batch"] else "")
        body.append([r["dtype"], r["threads"], name,
                     f"{r['m']}x{r['n']}x{r['k']}", _rate(r.get("ranvier"), "gflops")]
                    + [_rate(r.get(l), "gflops") for l in libs]
                    + [_x(r.get(f"ratio_vs_{l}")) for l in libs]
                    + ["" if r.get("ranvier_ok", True) else "WRONG RESULT"])
    parts.append(_table(["dtype", "threads", "product", "m x n x k", "ranvier GFLOP/s"]
                        + [f"{LIB_NAMES[l]} GFLOP/s" for l in libs]
                        + [f"ranvier/{LIB_NAMES[l]}" for l in libs] + ["check"], body))
    return "\n\n".join(parts + [_notes(g)])


def gemm_bf16_md(g):
    rows = g["rows"]
    libs = [l for l in ("ranvier_f32", "torch") if any(r.get(l) for r in rows)]
    names = {"ranvier_f32": "ranvier float32", "torch": "PyTorch bf16"}
    parts = [f"ranvier bf16 ran the **{g.get('path')}** path. Ratios are ranvier bf16's GFLOP/s "
             "over the other's: above 1, ranvier bf16 is faster."]
    summ = []
    for nt in sorted({r["threads"] for r in rows}):
        for kind, label in (("mlp", "MLP products"), ("square", "squares")):
            sel = [r for r in rows if r["threads"] == nt and r["kind"] == kind]
            if sel:
                summ.append([nt, f"{label} ({len(sel)})"]
                            + [_x(geomean([r.get(f"ratio_vs_{l}") for r in sel])) for l in libs])
    parts.append("Geometric means of the ratios:\n\n"
                 + _table(["threads", "shapes"] + [f"bf16/{names[l]}" for l in libs], summ))
    body = []
    for r in rows:
        name = r["name"] + (f" B={r['batch']}" if r["batch"] else "")
        body.append([r["threads"], name, f"{r['m']}x{r['n']}x{r['k']}",
                     _rate(r.get("ranvier"), "gflops")]
                    + [_rate(r.get(l), "gflops") for l in libs]
                    + [_x(r.get(f"ratio_vs_{l}")) for l in libs]
                    + ["" if r.get("ranvier_ok", True) else "WRONG RESULT"])
    parts.append(_table(["threads", "product", "m x n x k", "ranvier bf16 GFLOP/s"]
                        + [f"{names[l]} GFLOP/s" for l in libs]
                        + [f"bf16/{names[l]}" for l in libs] + ["check"], body))
    return "\n\n".join(parts + [_notes(g)])


def elementwise_md(e):
    rows = e["rows"]
    libs = [l for l in ("numpy", "torch") if any(r.get(l) for r in rows)]
    body = []
    for r in rows:
        body.append([r["op"], "x".join(map(str, r["shape"])), r["threads"],
                     r.get("ranvier_threads_used", ""), _rate(r.get("ranvier"), "gbs")]
                    + [_rate(r.get(l), "gbs") for l in libs]
                    + [_x(r.get(f"ratio_vs_{l}")) for l in libs]
                    + [f"{r['ranvier_pct_of_copy']:.0f}%", f"{r['copy_gbs']:.1f}"])
    paths = e.get("ranvier_paths", {})
    parts = ["Ratios are ranvier's GB/s over the other's (= time ratio inverted): above 1, ranvier "
             "is faster. \"% of copy\" is ranvier's GB/s over np.copyto's on an array of the same "
             "shape, same byte count.",
             _table(["op", "shape", "threads", "ranvier threads used", "ranvier GB/s"]
                    + [f"{LIB_NAMES[l]} GB/s" for l in libs]
                    + [f"ranvier/{LIB_NAMES[l]}" for l in libs]
                    + ["ranvier % of copy", "copy GB/s"], body)]
    if paths:
        parts.append("ranvier kernels: " + "; ".join(f"{k}: {v}" for k, v in paths.items()))
    return "\n\n".join(parts + [_notes(e)])


def e2e_md(e):
    rows = e["rows"]
    libs = [l for l in ("ranvier", "numpy", "torch", "sklearn") if any(r.get(l) for r in rows)]
    others = [l for l in libs if l != "ranvier"]
    body = []
    for r in rows:
        cells = [r["task"], r["optimizer"], r["batch"], r["threads"], r["steps"]]
        for l in libs:
            t = r.get(l)
            cells += ([_secs(t["time"]), f"{t['us_per_step']:.0f}",
                       f"{t['test_accuracy'] * 100:.2f}"]
                      if t else ["-", "-", "-"])
        cells += [_x(r.get(f"time_ratio_vs_{l}")) for l in others]
        body.append(cells)
    head = ["task", "optimizer", "batch", "threads", "steps"]
    for l in libs:
        head += [f"{LIB_NAMES[l]} s", "us/step", "acc %"]
    head += [f"ranvier/{LIB_NAMES[l]} time" for l in others]
    rss = [[LIB_NAMES[l], f"{v['max_rss_mb']:.0f}", f"{v.get('wall_s', 0):.0f}"]
           for l, v in e.get("libs", {}).items() if v]
    data = e.get("data", {})
    src = "; ".join(f"{k}: {v.get('n_train', '?')} train / {v.get('n_test', '?')} test from "
                    f"{v.get('source', v.get('skipped'))}" for k, v in data.items())
    hp = e.get("hyperparameters", {})
    parts = [f"Time ratios are ranvier's time over the other's: below 1, ranvier is faster. "
             f"Times are median (min-max) of {e.get('repeats')} runs (digits: "
             f"{e.get('digits_epochs')} epochs per run) and {e.get('mnist_repeats')} runs (MNIST: "
             f"one epoch per run); accuracy on the test set after a run. SGD lr "
             f"{hp.get('sgd_lr')} momentum {hp.get('momentum')}; Adam lr {hp.get('adam_lr')}.",
             f"Data: {src}.", _table(head, body),
             "Peak RSS of each library's own subprocess (MiB):\n\n"
             + _table(["library", "peak RSS MiB", "subprocess wall s"], rss)]
    return "\n\n".join(parts + [_notes(e)])


def conv_md(c):
    rows = c["rows"]
    out = ["Time ratios are ranvier's time over PyTorch's: below 1, ranvier is faster. "
           f"float32, batch {c.get('batch')}; ms per call, median (min-max).", ""]
    table = []
    for r in rows:
        t = r.get("torch")
        table.append([r["layer"], r["threads"], r["pass"], _secs(r["ranvier"], 2, 1e3),
                      f"{r['ranvier'].get('gflops', float('nan')):.1f}",
                      _secs(t, 2, 1e3),
                      f"{t['gflops']:.1f}" if t else "-",
                      _x(r.get("time_ratio_vs_torch")) if t else "-"])
    out.append(_table(["layer", "threads", "pass", "ranvier ms", "GFLOP/s", "PyTorch ms",
                       "GFLOP/s", "ranvier/PyTorch time"], table))
    out += ["", _notes(c)]
    return "\n".join(out)


def cnn_md(c):
    out = ["Time ratios are ranvier's time over PyTorch's: below 1, ranvier is faster. float32, "
           f"Adam, batch {c.get('batch')}, {c.get('data')}; seconds per run of the steps, median "
           f"(min-max) of {c.get('repeats')}. GEMM floor: the step's products alone through "
           "ranvier's GEMM (see ranvier/bench/cnn_train.py); the loss is the run's mean training "
           "loss.", ""]
    table = []
    for r in c["rows"]:
        t = r.get("torch")
        table.append([r["net"], r["threads"], r["steps"], _secs(r["ranvier"]),
                      f"{r['ranvier']['ms_per_step']:.2f}", f"{r['ranvier']['loss']:.4f}",
                      _secs(t), f"{t['ms_per_step']:.2f}" if t else "-",
                      f"{t['loss']:.4f}" if t else "-",
                      _x(r.get("time_ratio_vs_torch")) if t else "-",
                      f"{r['gemm_floor_ms_per_step']:.2f}", _x(r["vs_floor"])])
    out.append(_table(["net", "threads", "steps", "ranvier s", "ms/step", "loss", "PyTorch s",
                       "ms/step", "loss", "ranvier/PyTorch time", "GEMM floor ms/step",
                       "ranvier/floor"], table))
    out += ["", _notes(c)]
    return "\n".join(out)


def sklearn_md(k):
    out = ["Speed is scikit-learn's time per epoch (adam) or iteration (lbfgs) over ranvier's: "
           "above 1, ranvier is faster.", ""]
    table = []
    for r in k["rows"]:
        cells = [r["solver"], r["threads"], r["n_train"]]
        for lib in ("ranvier", "sklearn"):
            v = r.get(lib)
            cells += ([_secs(v["time"]), v["n_iter"],
                       f"{v['test_accuracy'] * 100:.2f}"] if v else ["-", "-", "-"])
        cells.append(_x(r.get("speed_per_iter_vs_sklearn")))
        table.append(cells)
    out.append(_table(["solver", "threads", "images", "ranvier fit s", "iterations", "acc %",
                       "scikit-learn fit s", "iterations", "acc %", "speed vs scikit-learn"],
                      table))
    out += ["", _notes(k)]
    return "\n".join(out)


def render_md(res):
    parts = ["# ranvier benchmarks: side by side with NumPy, PyTorch and scikit-learn", "",
             machine_md(res)]
    sections = (("gemm", "1. GEMM", gemm_md), ("elementwise", "2. Elementwise and fused kernels",
                                                 elementwise_md),
                ("e2e", "3. End to end training", e2e_md),
                ("conv", "4. Convolutions (Conv2d per layer)", conv_md),
                ("cnn", "5. CNN training (LeNet-5, PyTorch's examples/mnist)", cnn_md),
                ("sklearn", "6. scikit-learn's MLPClassifier.fit", sklearn_md),
                ("bf16", "7. bfloat16 GEMM", gemm_bf16_md))
    for key, title, fn in sections:
        parts.append(f"\n## {title}\n")
        if res.get(key) and res[key].get("rows"):
            parts.append(fn(res[key]))
        else:
            err = (res.get(key) or {}).get("error")
            parts.append(f"Not run{': ' + err if err else ''}.")
    return "\n".join(parts) + "\n"


# -- chart --------------------------------------------------------------------------------------
def _bars(ax, labels, series, ylabel, title, log=False):
    import numpy as np

    libs = [l for l in series if any(v is not None for v in series[l])]
    width = 0.8 / max(1, len(libs))
    x = np.arange(len(labels))
    for i, l in enumerate(libs):
        vals = [v if v is not None else 0 for v in series[l]]
        ax.bar(x + (i - (len(libs) - 1) / 2) * width, vals, width, label=LIB_NAMES.get(l, l),
               color=COLORS.get(l))
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def render_png(res, path):
    """A 2x3 chart; returns None, or why it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    fig, axes = plt.subplots(2, 3, figsize=(19, 10.5))
    threads = res.get("config", {}).get("threads", [1])
    t_lo, t_hi = min(threads), max(threads)
    g = (res.get("gemm") or {}).get("rows", [])
    mlp = [r for r in g if r["kind"] == "mlp" and r["dtype"] == "float32"]
    batches = sorted({r["batch"] for r in mlp})
    b = min(batches, key=lambda v: abs(v - 128)) if batches else None
    for ax, nt in ((axes[0, 0], t_lo), (axes[0, 1], t_hi)):
        sel = [r for r in mlp if r["batch"] == b and r["threads"] == nt]
        if sel:
            _bars(ax, [r["name"] for r in sel],
                  {l: [r[l]["gflops"] if r.get(l) else None for r in sel]
                   for l in ("ranvier", "numpy", "torch")},
                  "GFLOP/s", f"GEMM, MLP 784-256-128-10 products, float32, batch {b}, "
                  f"{nt} thread{'s' * (nt > 1)}")
        else:
            ax.set_axis_off()
    sq = [r for r in g if r["kind"] == "square" and r["threads"] == t_hi]
    if sq:
        _bars(axes[0, 2], [f"{r['dtype']} {r['m']}" for r in sq],
              {l: [r[l]["gflops"] if r.get(l) else None for r in sq]
               for l in ("ranvier", "numpy", "torch")},
              "GFLOP/s", f"GEMM, square n x n x n, {t_hi} thread{'s' * (t_hi > 1)}")
    else:
        axes[0, 2].set_axis_off()
    ew = (res.get("elementwise") or {}).get("rows", [])
    if ew:
        big = max({tuple(r["shape"]) for r in ew}, key=lambda s: s[0] * s[1])
        sel = [r for r in ew if tuple(r["shape"]) == big and r["threads"] == t_hi]
        _bars(axes[1, 0], [r["op"] for r in sel],
              {l: [r[l]["gbs"] if r.get(l) else None for r in sel]
               for l in ("ranvier", "numpy", "torch")},
              "GB/s (bytes read + written / s)",
              f"Elementwise, {big[0]}x{big[1]} float32, {t_hi} thread{'s' * (t_hi > 1)}")
        if sel:
            axes[1, 0].axhline(sel[0]["copy_gbs"], color=COLORS["copy"], ls="--", lw=1)
            axes[1, 0].text(len(sel) - 0.5, sel[0]["copy_gbs"], " np.copyto", fontsize=8,
                            va="bottom", ha="right", color=COLORS["copy"])
    else:
        axes[1, 0].set_axis_off()
    e = (res.get("e2e") or {}).get("rows", [])
    mn = [r for r in e if r["task"] == "mnist"] or e
    for ax, nt in ((axes[1, 1], t_lo), (axes[1, 2], t_hi)):
        sel = [r for r in mn if r["threads"] == nt]
        if sel:
            task = sel[0]["task"]
            _bars(ax, [f"{r['optimizer']} B={r['batch']}" for r in sel],
                  {l: [r[l]["time"]["median"] if r.get(l) else None for r in sel]
                   for l in ("ranvier", "numpy", "torch", "sklearn")},
                  "seconds (lower is better)",
                  f"End to end, {task} {'784-256-128-10, one epoch' if task == 'mnist' else ''}, "
                  f"{nt} thread{'s' * (nt > 1)}")
        else:
            ax.set_axis_off()
    m = res.get("machine", {})
    fig.suptitle(f"ranvier {m.get('ranvier')} vs NumPy / PyTorch / scikit-learn on {m.get('cpu')} "
                 f"({m.get('cores')} cores, GEMM ISA {m.get('ranvier_isa')})"
                 + ("  [QUICK smoke test]" if res.get("config", {}).get("quick") else ""),
                 fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return None


def render(res, out_dir):
    """Write results.md and results.png next to each other; returns notes about what was skipped."""
    write_text(os.path.join(out_dir, "results.md"), render_md(res))
    why = render_png(res, os.path.join(out_dir, "results.png"))
    return [why] if why else []


# -- one table across CPU kinds --------------------------------------------------------------------
def _gemm_geomean(res, kind, nt, lib):
    rows = [r for r in (res.get("gemm") or {}).get("rows", [])
            if r["dtype"] == "float32" and r["threads"] == nt and r["kind"] == kind]
    return geomean([r.get(f"ratio_vs_{lib}") for r in rows])


def _e2e_ratio(res, batch, nt, lib):
    for r in (res.get("e2e") or {}).get("rows", []):
        if (r["task"], r["optimizer"], r["batch"], r["threads"]) == ("mnist", "adam", batch, nt):
            return r.get(f"time_ratio_vs_{lib}")
    return None


def _cnn_ratio(res, net, nt):
    for r in (res.get("cnn") or {}).get("rows", []):
        if (r["net"], r["threads"]) == (net, nt):
            return r.get("time_ratio_vs_torch")
    return None


# (label, value of one results.json at a thread count); speed ratios above 1 and time ratios
# below 1 are ranvier's wins
SUMMARY = [
    ("GEMM f32 MLP products, GFLOP/s vs NumPy", lambda r, t: _gemm_geomean(r, "mlp", t, "numpy")),
    ("GEMM f32 MLP products, GFLOP/s vs PyTorch", lambda r, t: _gemm_geomean(r, "mlp", t, "torch")),
    ("GEMM f32 squares, GFLOP/s vs NumPy", lambda r, t: _gemm_geomean(r, "square", t, "numpy")),
    ("GEMM f32 squares, GFLOP/s vs PyTorch", lambda r, t: _gemm_geomean(r, "square", t, "torch")),
    ("MNIST MLP epoch, Adam b32, time vs PyTorch", lambda r, t: _e2e_ratio(r, 32, t, "torch")),
    ("MNIST MLP epoch, Adam b512, time vs NumPy", lambda r, t: _e2e_ratio(r, 512, t, "numpy")),
    ("MNIST MLP epoch, Adam b512, time vs PyTorch", lambda r, t: _e2e_ratio(r, 512, t, "torch")),
    ("LeNet-5 steps, time vs PyTorch", lambda r, t: _cnn_ratio(r, "lenet5", t)),
    ("examples/mnist steps, time vs PyTorch", lambda r, t: _cnn_ratio(r, "examples/mnist", t)),
]


def summary_md(results):
    """One Markdown table of the headline ratios of several runs (a results.json each, one per CPU
    kind), 1 and 2 threads side by side: the table the README quotes."""
    head = ["measure"] + [f"{_kind(r)} {t} thr" for r in results for t in (1, 2)]
    body = []
    for label, fn in SUMMARY:
        body.append([label] + [_x(fn(r, t)) for r in results for t in (1, 2)])
    runs = []
    for r in results:
        d = r["machine"].get("cpu_detail") or {}
        runs.append(f"{_kind(r)} {r['config'].get('started', '?')[:10]} ({d.get('model_name', '?')}"
                    f" family {d.get('family', '?')} model {d.get('model', '?')}, "
                    f"{', '.join(d.get('flags', []))})")
    return _table(head, body) + f"\n\nRuns: {'; '.join(runs)}.\n"


def _kind(res):
    return res["machine"].get("cpu_kind") or res.get("_dir", "?")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--summary"] and len(args) > 1:
        results = []
        for path in args[1:]:
            with open(path) as f:
                results.append(json.load(f))
            results[-1]["_dir"] = os.path.basename(os.path.dirname(os.path.abspath(path)))
        print(summary_md(results), end="")
        return
    if len(args) != 1:
        raise SystemExit("usage: python -m ranvier.bench.report RESULTS.json\n"
                         "       python -m ranvier.bench.report --summary RESULTS.json...")
    path = args[0]
    with open(path) as f:
        res = json.load(f)
    for n in render(res, os.path.dirname(os.path.abspath(path))):
        print(n)


if __name__ == "__main__":
    main()
