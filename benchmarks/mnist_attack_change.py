"""Measurement: what changing Q_l2's attack moves, between two `jaxfrag mnist` runs on the same networks.

    python benchmarks/mnist_attack_change.py runs/mnist runs/mnist-walk

Both runs must share networks and test 7s (the second made with `--resume` on a copy of the
first's `networks.npz` and `meta.json`, and another `--attack`). Prints, per (network, 7) pair, the
first run's Q_l2 over the second's (median, p10, min, max, shares more than 1% shorter and longer),
and both runs' pooled bar-rule Q_l2/(0.5L) and claims (claims.csv).
"""

from __future__ import annotations

import argparse

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args()
    runs = [pd.read_parquet(f"{run}/results.parquet") for run in (args.first, args.second)]
    both = runs[0].merge(runs[1], on=["network", "image", "mask_rule"], suffixes=("_1", "_2"))
    pairs = both[both.mask_rule == "bar"]  # Q_l2 is per image: one rule's rows are every pair once
    ratio = pairs.Q_l2_1 / pairs.Q_l2_2
    print(
        f"{len(pairs)} pairs, Q_l2 first/second: median {ratio.median():.4f}, p10 {ratio.quantile(0.1):.4f}, "
        f"min {ratio.min():.4f}, max {ratio.max():.4f}; more than 1% shorter on {(ratio < 0.99).mean():.1%}, "
        f"longer on {(ratio > 1.01).mean():.1%}"
    )
    for run in (args.first, args.second):
        summary = pd.read_csv(f"{run}/summary.csv")
        row = summary[
            (summary.group == "all") & (summary.mask_rule == "bar") & (summary.subset == "with_a1")
            & (summary.metric == "Q_l2_ratio")
        ].iloc[0]  # fmt: skip
        claims = pd.read_csv(f"{run}/claims.csv")
        claims = claims[(claims.network == "all") & (claims.mask_rule == "bar") & (claims.Q == "l2")]
        print(f"{run}: bar rule Q_l2/(0.5L) {row['mean']:.3f} +- {row['se']:.3f} (n {row['n']})")
        for _, claim in claims.iterrows():
            print(f"  {claim.claim}: difference {claim.diff_mean:+.3f} [{claim.diff_low:+.3f}, {claim.diff_high:+.3f}]")


if __name__ == "__main__":
    main()
