"""What a grid answers (`jaxfrag.reports.grid`): per-d measures, slopes and paired changes, on synthetic rows
whose answers numpy computes independently here."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jaxfrag import grid, rmt
from jaxfrag.config import Config
from jaxfrag.experiments import registry
from jaxfrag.reports import grid as ablation

EXPERIMENTS = registry()
GRID = grid.Grid(
    (grid.Axis("optimizer", "optimizer", ("sgd", "adam")), grid.Axis("width", "width", (64, 512)))
)  # adam is the default (not first on its axis); 3000, the default width, is not on the axis: 64 is the reference
CELLS = [("linear", point) for point in GRID.points()]


def linear_rows(d_values=(8, 16), trials=40, seed=0) -> pd.DataFrame:
    """Rows like the linear experiment's at every grid point: random, with some failures and a NaN trial."""
    rng = np.random.default_rng(seed)
    frames = []
    for point in GRID.points():
        for d in d_values:
            frame = pd.DataFrame(
                {
                    "experiment": "linear",
                    **{field: [value] * trials for field, value in point},
                    "d": d,
                    "trial": np.arange(trials),
                    "nonfinite": np.arange(trials) == 3,
                    "train_acc": np.where(rng.random(trials) < 0.7, 1.0, 0.9),
                    "diverged": rng.random(trials) < 0.05,
                    "cos_theta1": rng.uniform(-1, 1, trials).astype(np.float32),
                    "phi": rng.uniform(0, 1, trials).astype(np.float32),
                    "robustness_ratio": rng.uniform(0, 1, trials),
                    "gap": rng.uniform(0, 1, trials),
                    "epochs_run": rng.integers(20, 40, trials),
                }
            )
            frames.append(frame.sample(frac=1, random_state=int(rng.integers(1 << 30))))  # rows in any order
    return pd.concat(frames, ignore_index=True)


def test_paired_changes_are_trial_by_trial_against_each_axis_reference():
    rows = linear_rows()
    table = ablation.paired(rows, EXPERIMENTS, GRID, CELLS)
    # one row per axis x other value x the other axis's values x d
    assert len(table) == 2 * 1 * 2 * 2
    assert set(table[table.axis == "optimizer"].reference) == {"adam"}  # the run's default, though listed second
    assert set(table[table.axis == "width"].reference) == {"64"}  # the default 3000 is not on the axis: the first
    for _, r in table.iterrows():
        field = r["axis"]
        rest = dict(part.split("=") for part in r["rest"].split(","))
        chosen = rows[(rows.d == r["d"]) & (rows[field].astype(str) == r["value"])]
        base = rows[(rows.d == r["d"]) & (rows[field].astype(str) == r["reference"])]
        for other_field, text in rest.items():
            chosen = chosen[chosen[other_field].astype(str) == text]
            base = base[base[other_field].astype(str) == text]
        chosen, base = chosen.set_index("trial").sort_index(), base.set_index("trial").sort_index()
        keep = ~chosen.nonfinite.to_numpy() & ~base.nonfinite.to_numpy()
        assert r["pairs"] == keep.sum() == 39
        success = lambda f: ((f.train_acc == 1) & ~f.diverged).to_numpy(float)  # noqa: E731
        measures = {
            "success": (success(chosen), success(base)),
            "compression": (np.abs(chosen.cos_theta1.to_numpy(float)), np.abs(base.cos_theta1.to_numpy(float))),
            "tracking_error": tuple(
                np.abs(np.abs(f.cos_theta1.to_numpy(float)) - f.phi.to_numpy(float)) for f in (chosen, base)
            ),
            "gap": (chosen.gap.to_numpy(float), base.gap.to_numpy(float)),
        }
        for name, (after, before) in measures.items():
            diff = after[keep] - before[keep]
            half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
            assert r[f"{name}_change"] == pytest.approx(diff.mean(), abs=1e-6)
            assert r[f"{name}_change_low"] == pytest.approx(diff.mean() - half, abs=1e-6)
            assert r[f"{name}_change_high"] == pytest.approx(diff.mean() + half, abs=1e-6)
        both = (success(chosen)[keep] == 1) & (success(base)[keep] == 1)
        assert r["fit_both"] == both.sum()
        gap_diff = chosen.gap.to_numpy(float)[keep][both] - base.gap.to_numpy(float)[keep][both]
        assert r["gap_fit_both_change"] == pytest.approx(gap_diff.mean(), abs=1e-12)


def test_measures_split_all_nets_from_successes_and_relu_pools_the_flipped_inputs():
    rows = linear_rows(d_values=(8,))
    rng = np.random.default_rng(1)
    n = 30
    relu_rows = pd.DataFrame(
        {
            "experiment": "relu",
            "d": 8,
            "trial": np.arange(n),
            "nonfinite": False,
            "train_acc": np.where(rng.random(n) < 0.6, 1.0, 0.95),
            "diverged": False,
            "flips_b1": rng.random(n) < 0.8,
            "flips_b2": rng.random(n) < 0.8,
            "cos_theta_t_b1": rng.uniform(-1, 1, n),
            "cos_theta_t_b2": rng.uniform(-1, 1, n),
            "delta_b1": rng.uniform(0, 2, n),
            "delta_b2": rng.uniform(0, 2, n),
            "m": rng.uniform(1, 3, n),
            "phi": rng.uniform(0, 1, n),
            "gap": rng.uniform(0, 1, n),
            "epochs_run": 20,
        }
    )
    config = Config(protocol="until-fit", max_epochs=30)
    table = ablation.measures(rows, EXPERIMENTS, CELLS[:1], config)
    point_rows = rows[(rows.optimizer == "sgd") & (rows.width == 64) & ~rows.nonfinite]
    ok = (point_rows.train_acc == 1) & ~point_rows.diverged
    r = table.iloc[0]
    assert r["config"] == "optimizer=sgd,width=64" and r["n"] == 39
    assert r["success_fraction"] == pytest.approx(ok.mean())
    assert r["capped_fraction"] == pytest.approx(((point_rows.epochs_run >= 30) & ~ok).mean())
    tracking = np.abs(point_rows.cos_theta1.to_numpy(float)) - point_rows.phi.to_numpy(float)
    assert r["tracking_all_mean"] == pytest.approx(tracking.mean(), abs=1e-6)
    assert r["tracking_success_mean"] == pytest.approx(tracking[ok.to_numpy()].mean(), abs=1e-6)
    assert r["phi_mean_theory"] == pytest.approx(float(rmt.phi_mean(8)))

    relu = ablation.measures(relu_rows, EXPERIMENTS, [("relu", ())], Config()).iloc[0]
    cos = np.abs(relu_rows[["cos_theta_t_b1", "cos_theta_t_b2"]].to_numpy())
    ratio = relu_rows[["delta_b1", "delta_b2"]].to_numpy() / relu_rows[["m"]].to_numpy()
    flips = relu_rows[["flips_b1", "flips_b2"]].to_numpy()
    per_net = [
        (cos[i][flips[i]].mean(), ratio[i][flips[i]].mean()) for i in range(n) if flips[i].any()
    ]  # nets where neither input flipped have no measure
    success = (relu_rows.train_acc == 1).to_numpy()[[i for i in range(n) if flips[i].any()]]
    compression, robustness = np.array(per_net).T
    assert relu["compression_all_n"] == len(per_net)
    assert relu["compression_all_mean"] == pytest.approx(compression.mean())
    assert relu["robustness_success_mean"] == pytest.approx(robustness[success].mean())
    assert relu["tracking_success_mean"] == pytest.approx((compression - robustness)[success].mean())
    assert np.isnan(relu["capped_fraction"])  # the fixed protocol has no cap


def test_slopes_recover_power_laws_and_e_phi():
    d = np.array([8, 16, 32, 64])
    per_d = pd.DataFrame({"experiment": "linear", "d": d, "phi_mean_theory": [float(rmt.phi_mean(int(v))) for v in d]})
    for measure in ablation.MEASURES:
        for group in ablation.GROUPS:
            per_d[f"{measure}_{group}_mean"] = 0.7 * d**-0.5
    per_d["gap_success_mean"] = 0.3 * d**-0.25 * np.array([1.01, 0.99, 1.01, 0.99])  # not exactly a power law
    slopes = ablation.slopes(per_d, [("linear", ())]).set_index("quantity")
    assert slopes.loc["gap, all", "slope"] == pytest.approx(-0.5)
    expected = np.polyfit(np.log(d), np.log(0.3 * d**-0.25 * np.array([1.01, 0.99, 1.01, 0.99])), 1)[0]
    success = slopes.loc["gap, success"]
    assert success["slope"] == pytest.approx(expected) and success["ci_low"] < expected < success["ci_high"]
    assert success["ci_high"] - success["ci_low"] > 0.01  # the wiggle gives the interval a width
    theory = np.polyfit(np.log(d), np.log(per_d.phi_mean_theory), 1)[0]
    assert slopes.loc["E[phi] (closed form)", "slope"] == pytest.approx(theory)
    assert -0.55 < theory < -0.45
    assert set(slopes["d_points"]) == {4}
