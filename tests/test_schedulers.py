"""Learning-rate schedules against torch.optim.lr_scheduler (same settings, same values for 40
steps, two parameter groups with different rates), closed-form references without torch,
ReduceLROnPlateau on scripted metric sequences, state_dict round trips and bad arguments."""
import math

import numpy as np
import pytest

import ranvier as rv

# torch warns when a schedule steps before its optimizer ever did; some tests step only the
# schedules.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")

STEPS = 40
REL = 1e-12


def _params():
    return [rv.Parameter(np.zeros(3)), rv.Parameter(np.zeros(2))]


def _optimizer(params=None, lrs=(0.1, 0.03)):
    params = params or _params()
    return rv.SGD([{"params": [params[0]], "lr": lrs[0]}, {"params": [params[1]], "lr": lrs[1]}],
                  lr=0.5, momentum=0.9)


def _torch_optimizer(torch, lrs=(0.1, 0.03)):
    ps = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    return torch.optim.SGD([{"params": [ps[0]], "lr": lrs[0]}, {"params": [ps[1]], "lr": lrs[1]}],
                           lr=0.5, momentum=0.9)


def _assert_lrs(got, want, what):
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        assert abs(g - w) <= REL * abs(w), f"{what}: {g!r} != {w!r}"


# Each entry builds the schedule on an optimizer from a module: rv or torch.optim.lr_scheduler.
SCHEDULES = {
    "step_7_half": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "step_3_default": lambda m, o: m.StepLR(o, 3),
    "step_1_growth": lambda m, o: m.StepLR(o, step_size=1, gamma=1.05),
    "exponential": lambda m, o: m.ExponentialLR(o, gamma=0.93),
    "cosine_10_past_T_max": lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    "cosine_37": lambda m, o: m.CosineAnnealingLR(o, T_max=37),
    "cosine_1": lambda m, o: m.CosineAnnealingLR(o, T_max=1, eta_min=0.01),
    "linear_default": lambda m, o: m.LinearLR(o),
    "linear_warmup": lambda m, o: m.LinearLR(o, start_factor=0.25, total_iters=8),
    "linear_decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=30),
    "sequential_warmup_cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=5), m.CosineAnnealingLR(o, T_max=30)],
        milestones=[5]),
    "sequential_three": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.5, total_iters=4), m.ExponentialLR(o, gamma=0.9),
            m.StepLR(o, step_size=5, gamma=0.3)], milestones=[6, 20]),
    "sequential_cosine_eta": lambda m, o: m.SequentialLR(
        o, [m.ExponentialLR(o, gamma=0.8), m.CosineAnnealingLR(o, T_max=12, eta_min=0.002)],
        milestones=[3]),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_torch(torch, name):
    opt, topt = _optimizer(), _torch_optimizer(torch)
    sched = SCHEDULES[name](rv, opt)
    tsched = SCHEDULES[name](torch.optim.lr_scheduler, topt)
    _assert_lrs(sched.get_last_lr(), tsched.get_last_lr(), f"{name} after construction")
    seen = set()
    for step in range(1, STEPS + 1):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        want = tsched.get_last_lr()
        _assert_lrs(sched.get_last_lr(), want, f"{name} step {step}")
        _assert_lrs([g["lr"] for g in opt.param_groups], [g["lr"] for g in topt.param_groups],
                    f"{name} step {step} group lr")
        seen.add(round(want[0], 12))
    assert len(seen) >= 2  # the schedule really moved
    assert sched.last_epoch == tsched.last_epoch


def test_cosine_matches_torch_recursive_values_not_the_closed_form(torch):
    """torch's CosineAnnealingLR updates recursively; its values leave the closed form in the last
    bits. ranvier's are torch's: equal to the bit, where the closed form is not."""
    opt, topt = _optimizer(lrs=(0.1, 0.07)), _torch_optimizer(torch, lrs=(0.1, 0.07))
    sched = rv.CosineAnnealingLR(opt, T_max=25, eta_min=1e-4)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=25, eta_min=1e-4)
    differs = 0
    for t in range(1, 60):
        sched.step()
        tsched.step()
        assert sched.get_last_lr() == tsched.get_last_lr(), f"step {t}"
        closed = [1e-4 + (b - 1e-4) * (1 + math.cos(math.pi * t / 25)) / 2 for b in (0.1, 0.07)]
        differs += sched.get_last_lr() != closed
    assert differs > 0


def test_sequential_state_and_milestone_switch_match_torch(torch):
    """SequentialLR switches with the next schedule's closed form at the milestone; the
    sub-schedules' last_epoch values follow torch's."""
    opt, topt = _optimizer(), _torch_optimizer(torch)
    sched = SCHEDULES["sequential_three"](rv, opt)
    tsched = SCHEDULES["sequential_three"](torch.optim.lr_scheduler, topt)
    for _ in range(25):
        sched.step()
        tsched.step()
        assert [s.last_epoch for s in sched._schedulers] == \
            [s.last_epoch for s in tsched._schedulers]
    assert sched.last_epoch == tsched.last_epoch


# --------------------------------------------------------------------------------------------
# Closed forms and hand-computed values (no torch)
# --------------------------------------------------------------------------------------------

def _run(sched, steps=STEPS):
    out = [sched.get_last_lr()]
    for _ in range(steps):
        sched.step()
        out.append(sched.get_last_lr())
    return np.array(out)


@pytest.mark.quick
def test_step_and_exponential_closed_forms():
    base = np.array([0.1, 0.03])
    t = np.arange(STEPS + 1)[:, None]
    got = _run(rv.StepLR(_optimizer(), step_size=7, gamma=0.5))
    np.testing.assert_allclose(got, base * 0.5 ** (t // 7), rtol=1e-15, atol=0)
    got = _run(rv.ExponentialLR(_optimizer(), gamma=0.93))
    np.testing.assert_allclose(got, base * 0.93 ** t, rtol=1e-13, atol=0)


def test_cosine_close_to_closed_form_and_periodic():
    base = np.array([0.1, 0.03])
    t = np.arange(STEPS + 1)[:, None]
    got = _run(rv.CosineAnnealingLR(_optimizer(), T_max=10, eta_min=0.001))
    want = 0.001 + (base - 0.001) * (1 + np.cos(np.pi * t / 10)) / 2
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * base.max())
    np.testing.assert_allclose(got[10], [0.001, 0.001], rtol=1e-9)   # bottom at T_max
    np.testing.assert_allclose(got[20], base, rtol=1e-9)              # back up at 2 T_max


def test_linear_warmup_values():
    opt = _optimizer()
    got = _run(rv.LinearLR(opt, start_factor=0.25, total_iters=4), steps=8)
    factors = np.array([0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(got, factors[:, None] * [0.1, 0.03], rtol=1e-14)
    assert opt.param_groups[0]["initial_lr"] == 0.1


@pytest.mark.quick
def test_sequential_warmup_then_cosine_values():
    opt = _optimizer()
    sched = rv.SequentialLR(opt, [rv.LinearLR(opt, start_factor=0.1, total_iters=5),
                                  rv.CosineAnnealingLR(opt, T_max=30)], milestones=[5])
    got = _run(sched, steps=35)[:, 0]
    np.testing.assert_allclose(got[:6], 0.1 * np.array([0.1, 0.28, 0.46, 0.64, 0.82, 1.0]),
                               rtol=1e-13)
    t = np.arange(0, 31)
    np.testing.assert_allclose(got[5:], 0.1 * (1 + np.cos(np.pi * t / 30)) / 2, rtol=0,
                               atol=1e-14)


def test_schedule_follows_outside_changes_recursively():
    """Recursive forms: an lr changed by hand between steps is carried forward (as in torch)."""
    opt = _optimizer()
    sched = rv.ExponentialLR(opt, gamma=0.5)
    sched.step()
    opt.param_groups[0]["lr"] = 1.0
    sched.step()
    assert sched.get_last_lr() == [0.5, 0.03 * 0.25]
    assert sched.base_lrs == [0.1, 0.03]


def test_get_last_lr_is_a_copy():
    sched = rv.StepLR(_optimizer(), 2)
    lrs = sched.get_last_lr()
    lrs[0] = 123.0
    assert sched.get_last_lr() == [0.1, 0.03]


# --------------------------------------------------------------------------------------------
# ReduceLROnPlateau
# --------------------------------------------------------------------------------------------

PLATEAU_CONFIGS = {
    "min_rel": dict(patience=2),
    "min_abs_cooldown": dict(mode="min", threshold=0.05, threshold_mode="abs", patience=1,
                             cooldown=2, factor=0.5),
    "max_rel": dict(mode="max", factor=0.3, patience=3, threshold=0.01),
    "max_abs_min_lr": dict(mode="max", threshold_mode="abs", threshold=0.0, patience=0,
                           factor=0.2, min_lr=[0.002, 0.001]),
    "min_lr_eps": dict(patience=0, factor=0.5, min_lr=0.02, eps=1e-3),
}


def _metrics(mode, n=45):
    """A noisy loss (or accuracy) with plateaus and small improvements."""
    rng = np.random.default_rng(3)
    base = np.concatenate([np.linspace(1.0, 0.6, 10), np.full(10, 0.6), np.linspace(0.6, 0.5, 8),
                           np.full(n - 28, 0.5)])
    m = base + 0.01 * rng.standard_normal(n)
    m[30] = np.nan  # a NaN metric is never an improvement
    return list(m) if mode == "min" else list(1.0 - m)


@pytest.mark.parametrize("name", list(PLATEAU_CONFIGS))
def test_reduce_on_plateau_matches_torch(torch, name):
    kw = PLATEAU_CONFIGS[name]
    opt, topt = _optimizer(), _torch_optimizer(torch)
    sched = rv.ReduceLROnPlateau(opt, **kw)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    reductions = 0
    for epoch, metric in enumerate(_metrics(kw.get("mode", "min"))):
        before = sched.get_last_lr()
        sched.step(metric)
        tsched.step(metric)
        _assert_lrs(sched.get_last_lr(), tsched.get_last_lr(), f"{name} epoch {epoch}")
        assert (sched.num_bad_epochs, sched.cooldown_counter) == \
            (tsched.num_bad_epochs, tsched.cooldown_counter)
        assert sched.best == tsched.best or (math.isnan(sched.best) and math.isnan(tsched.best))
        reductions += sched.get_last_lr() != before
    assert reductions >= 2


def test_reduce_on_plateau_hand_counted():
    opt = _optimizer()
    sched = rv.ReduceLROnPlateau(opt, patience=2, factor=0.5)
    lrs = []
    for m in [1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6, 0.49999, 0.4]:
        sched.step(m)
        lrs.append(sched.get_last_lr()[0])
    # epochs 2-4 bad (no improvement) -> halve at 4; 0.5 improves; 6-8 bad -> halve at 8;
    # 0.49999 is not better than 0.5 by the relative 1e-4 threshold; 0.4 is.
    assert lrs == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025]
    assert sched.best == 0.4 and sched.num_bad_epochs == 0 and sched.last_epoch == 10


def test_reduce_on_plateau_min_lr_and_eps():
    opt = _optimizer(lrs=(0.1, 1e-8))
    sched = rv.ReduceLROnPlateau(opt, patience=0, factor=0.1, min_lr=[0.05, 0.0])
    sched.step(1.0)
    sched.step(2.0)
    # group 0 stops at min_lr; group 1's change (9e-9) is below eps = 1e-8: skipped
    assert sched.get_last_lr() == [0.05, 1e-8]
    sched.step(np.float32(3.0))
    sched.step(np.array(4.0))
    assert sched.get_last_lr() == [0.05, 1e-8]


def test_reduce_on_plateau_bad_metric():
    sched = rv.ReduceLROnPlateau(_optimizer())
    for bad in ("1.0", None, [1.0, 2.0]):
        with pytest.raises(TypeError, match="metrics"):
            sched.step(bad)
    assert sched.last_epoch == 0


# --------------------------------------------------------------------------------------------
# state_dict round trips
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SCHEDULES))
def test_state_dict_round_trip_continues_identically(name):
    """Train 12 steps, save optimizer + schedule, rebuild both (schedule first, as torch
    recommends), load, continue: the rates equal those of an uninterrupted run."""
    ref_opt = _optimizer()
    ref = SCHEDULES[name](rv, ref_opt)
    ref_lrs = _run(ref, STEPS)

    opt = _optimizer()
    sched = SCHEDULES[name](rv, opt)
    for _ in range(12):
        sched.step()
    opt_sd, sched_sd = opt.state_dict(), sched.state_dict()
    sched.step()  # the saved state must not follow
    opt2 = _optimizer(lrs=(0.7, 0.7))
    sched2 = SCHEDULES[name](rv, opt2)
    opt2.load_state_dict(opt_sd)
    sched2.load_state_dict(sched_sd)
    assert sched2.get_last_lr() == list(ref_lrs[12])
    got = [sched2.get_last_lr()]
    for _ in range(STEPS - 12):
        sched2.step()
        got.append(sched2.get_last_lr())
    np.testing.assert_array_equal(np.array(got), ref_lrs[12:])


def test_plateau_state_dict_round_trip():
    metrics = _metrics("min")
    ref = rv.ReduceLROnPlateau(_optimizer(), patience=1, cooldown=1)
    ref_lrs = []
    for m in metrics:
        ref.step(m)
        ref_lrs.append(ref.get_last_lr())
    opt = _optimizer()
    sched = rv.ReduceLROnPlateau(opt, patience=1, cooldown=1)
    for m in metrics[:20]:
        sched.step(m)
    opt_sd, sd = opt.state_dict(), sched.state_dict()
    opt2 = _optimizer()
    sched2 = rv.ReduceLROnPlateau(opt2, mode="max", patience=5)
    opt2.load_state_dict(opt_sd)
    sched2.load_state_dict(sd)
    got = []
    for m in metrics[20:]:
        sched2.step(m)
        got.append(sched2.get_last_lr())
    assert got == ref_lrs[20:]
    assert sched2.mode == "min" and sched2.mode_worse == math.inf


@pytest.mark.parametrize("bad,exc,match", [
    ("x", TypeError, "state_dict must be a dict"),
    ({"last_epoch": 3, "bogus": 1}, ValueError, r"unknown keys \['bogus'\]"),
    ({"last_epoch": 3}, ValueError, "lacks"),
])
def test_load_state_dict_bad_input(bad, exc, match):
    sched = rv.StepLR(_optimizer(), 3)
    before = sched.state_dict()
    if isinstance(bad, dict) and "bogus" in bad:
        bad = {**before, **bad}
    with pytest.raises(exc, match=match):
        sched.load_state_dict(bad)
    assert sched.state_dict() == before
    wrong = {**before, "base_lrs": [0.1]}
    with pytest.raises(ValueError, match="base_lrs"):
        sched.load_state_dict(wrong)
    plateau = rv.ReduceLROnPlateau(_optimizer())
    with pytest.raises(ValueError, match="mode"):
        plateau.load_state_dict({**plateau.state_dict(), "mode": "median"})
    assert plateau.mode == "min"


def test_resume_with_last_epoch():
    opt = _optimizer()
    with pytest.raises(ValueError, match="initial_lr"):
        rv.StepLR(opt, 3, last_epoch=4)
    rv.StepLR(opt, 3)  # sets initial_lr
    sched = rv.ExponentialLR(opt, gamma=0.5, last_epoch=4)
    assert sched.last_epoch == 5 and sched.base_lrs == [0.1, 0.03]


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------

BAD = [
    (lambda o: rv.StepLR(o, 0), ValueError, "step_size"),
    (lambda o: rv.StepLR(o, 2.5), TypeError, "step_size"),
    (lambda o: rv.StepLR(o, True), TypeError, "step_size"),
    (lambda o: rv.StepLR(o, 3, gamma=0.0), ValueError, "gamma"),
    (lambda o: rv.StepLR(o, 3, gamma=-0.5), ValueError, "gamma"),
    (lambda o: rv.StepLR(o, 3, gamma=float("nan")), ValueError, "gamma"),
    (lambda o: rv.ExponentialLR(o, gamma=0), ValueError, "gamma"),
    (lambda o: rv.ExponentialLR(o, gamma="0.9"), TypeError, "gamma"),
    (lambda o: rv.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
    (lambda o: rv.CosineAnnealingLR(o, T_max=10.0), TypeError, "T_max"),
    (lambda o: rv.CosineAnnealingLR(o, T_max=10, eta_min=-1e-3), ValueError, "eta_min"),
    (lambda o: rv.LinearLR(o, start_factor=0.0), ValueError, "start_factor"),
    (lambda o: rv.LinearLR(o, start_factor=1.5), ValueError, "start_factor"),
    (lambda o: rv.LinearLR(o, end_factor=-0.1), ValueError, "end_factor"),
    (lambda o: rv.LinearLR(o, end_factor=1.1), ValueError, "end_factor"),
    (lambda o: rv.LinearLR(o, total_iters=0), ValueError, "total_iters"),
    (lambda o: rv.StepLR(o, 3, last_epoch=-2), ValueError, "last_epoch"),
    (lambda o: rv.ReduceLROnPlateau(o, mode="median"), ValueError, "mode"),
    (lambda o: rv.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor"),
    (lambda o: rv.ReduceLROnPlateau(o, factor=2.0), ValueError, "factor"),
    (lambda o: rv.ReduceLROnPlateau(o, factor=-0.1), ValueError, "factor"),
    (lambda o: rv.ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
    (lambda o: rv.ReduceLROnPlateau(o, patience=1.5), TypeError, "patience"),
    (lambda o: rv.ReduceLROnPlateau(o, threshold=-1e-4), ValueError, "threshold"),
    (lambda o: rv.ReduceLROnPlateau(o, threshold_mode="relative"), ValueError, "threshold_mode"),
    (lambda o: rv.ReduceLROnPlateau(o, cooldown=-1), ValueError, "cooldown"),
    (lambda o: rv.ReduceLROnPlateau(o, min_lr=-0.1), ValueError, "min_lr"),
    (lambda o: rv.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "min_lr has 1 values"),
    (lambda o: rv.ReduceLROnPlateau(o, min_lr=[0.1, -1.0]), ValueError, r"min_lr\[1\]"),
    (lambda o: rv.ReduceLROnPlateau(o, eps=-1.0), ValueError, "eps"),
    (lambda o: rv.SequentialLR(o, [], []), ValueError, "at least one"),
    (lambda o: rv.SequentialLR(o, [rv.StepLR(o, 2), rv.StepLR(o, 3)], []), ValueError,
     "milestones"),
    (lambda o: rv.SequentialLR(o, [rv.StepLR(o, 2), rv.StepLR(o, 3)], [0]), ValueError,
     r"milestones\[0\]"),
    (lambda o: rv.SequentialLR(o, [rv.StepLR(o, 2), rv.StepLR(o, 3), rv.StepLR(o, 4)], [5, 5]),
     ValueError, "increasing"),
    (lambda o: rv.SequentialLR(o, [rv.StepLR(o, 2), rv.ReduceLROnPlateau(o)], [3]), ValueError,
     "ReduceLROnPlateau"),
    (lambda o: rv.SequentialLR(o, [rv.StepLR(o, 2), rv.StepLR(_optimizer(), 3)], [3]),
     ValueError, "another optimizer"),
    (lambda o: rv.SequentialLR(o, [rv.StepLR(o, 2), "step"], [3]), TypeError, r"schedulers\[1\]"),
]


@pytest.mark.parametrize("make,exc,match", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_arguments_raise(make, exc, match):
    opt = _optimizer()
    with pytest.raises(exc, match=match):
        make(opt)


@pytest.mark.parametrize("cls", [rv.StepLR, rv.ExponentialLR, rv.CosineAnnealingLR, rv.LinearLR,
                                 rv.ReduceLROnPlateau])
def test_not_an_optimizer(cls):
    with pytest.raises(TypeError, match="Optimizer"):
        cls(object(), 5) if cls is not rv.ReduceLROnPlateau else cls(object())
