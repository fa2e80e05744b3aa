"""Summarises `switchyard eval loop --json` reports: per world, each seed's held-out AIQ
of every router, the differences the issue's bar names (with their 95% paired-bootstrap
intervals), the share of the full-information router's gain over random mixing, served
quality per dollar against the best single model's, and how often the OPE estimate held
the candidate's holdout truth; then the mean over seeds.

    python3 eval/bench/loop_summary.py eval/results/loop-*-s*.json [--json OUT]
"""

import argparse
import json
import statistics
from collections import defaultdict

ROUTERS = ["final", "start", "full-information", "uniform-logging", "knn"]
DIFFS = ["final - start", "final - knn", "final - uniform-logging", "final - full-information"]


def summarise(path):
    d = json.load(open(path))
    h = d["holdout"]
    aiq = {c["name"].split("@")[0]: c["aiq"]["value"] for c in h["contenders"]}
    aiq["random"] = h["random_aiq"]["value"]
    served = d["served"]
    best_single = max(v[2] for v in served["singles"].values())
    ope_in = sum(
        1
        for r in d["rounds"]
        if r["ope"]["quality"]["dr"]["ci95"][0]
        <= r["holdout_quality_candidate"]
        <= r["ope"]["quality"]["dr"]["ci95"][1]
    )
    # Quality per dollar on the holdout: the best point of any router's curve next to the
    # best single model's, i.e. whether any tradeoff of that router could beat the bar.
    curve_best = {
        c["name"].split("@")[0]: max(p["quality"] / p["cost"] for p in c["curve"] if p["cost"] > 0)
        for c in h["contenders"]
        if c["curve"]
    }
    single_best = max(s[2] / s[1] for s in h["singles"] if s[1] > 0)
    return {
        "file": path.split("/")[-1],
        "holdout_best_quality_per_dollar": {"single": single_best, **curve_best},
        "world": d["world"].split(".")[0],
        "aiq": aiq,
        "differences": {k: h["differences"][k] for k in DIFFS if k in h["differences"]},
        "share_of_fi_gain": {
            k: h["gain_shares"][k]["value"]
            for k in ["final / full-information", "uniform-logging / full-information", "knn / full-information"]
            if k in h["gain_shares"]
        },
        "explored_share": sum(r["explored_share"] * r["requests"] for r in d["rounds"]) / max(1, d["requests"]),
        "served_quality_per_dollar": served["quality_per_dollar"],
        "best_single_quality_per_dollar": best_single,
        "ope_within_interval": [ope_in, len(d["rounds"])],
        "promotions": d["promotions"],
        "seconds": d["seconds"],
    }


def fmt_diff(e):
    lo, hi = e["ci95"]
    mark = "clear" if lo > 0 else ("below" if hi < 0 else "tie")
    return f"{e['value']:+.4f} [{lo:+.4f}, {hi:+.4f}] {mark}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--json", help="write the summary here")
    args = ap.parse_args()
    runs = [summarise(p) for p in args.reports]
    by_world = defaultdict(list)
    for r in runs:
        by_world[r["world"]].append(r)
    means = {}
    for world, rs in by_world.items():
        print(f"\n{world}: {len(rs)} seeds")
        for r in rs:
            a = r["aiq"]
            print(f"  {r['file']}: " + ", ".join(f"{k} {a[k]:.4f}" for k in ROUTERS + ["random"] if k in a))
            for k, e in r["differences"].items():
                print(f"    {k:<28} {fmt_diff(e)}")
            shares = ", ".join(f"{k.split(' /')[0]} {v:+.2f}" for k, v in r["share_of_fi_gain"].items())
            print(f"    share of full-information's gain over random: {shares}")
            print(
                f"    explored {r['explored_share']:.3f}; served quality/$ {r['served_quality_per_dollar']:.0f}"
                f" vs best single {r['best_single_quality_per_dollar']:.0f};"
                f" OPE within interval {r['ope_within_interval'][0]}/{r['ope_within_interval'][1]};"
                f" {r['promotions']} promotions; {r['seconds']:.0f} s"
            )
            qpd = r["holdout_best_quality_per_dollar"]
            print(
                "    holdout, best quality/$ of any point: "
                + ", ".join(f"{k} {v:.0f}" for k, v in qpd.items() if k in ["single", "final", "full-information"])
            )
        mean = {k: statistics.mean(r["aiq"][k] for r in rs) for k in ROUTERS + ["random"] if all(k in r["aiq"] for r in rs)}
        means[world] = mean
        print("  mean AIQ: " + ", ".join(f"{k} {v:.4f}" for k, v in mean.items()))
        for k in DIFFS:
            vals = [r["differences"][k]["value"] for r in rs if k in r["differences"]]
            clear = sum(1 for r in rs if k in r["differences"] and r["differences"][k]["ci95"][0] > 0)
            if vals:
                print(f"  {k:<28} mean {statistics.mean(vals):+.4f}, interval clear of 0 in {clear} of {len(vals)} seeds")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "mean_aiq": means}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
