#!/usr/bin/env python3
"""What can 3,000 requests with 10% exploration teach any router? A study for issue 23.

Issue 23's bar asks the learning loop (`switchyard eval loop`) for >= 90% of the
full-information router's AIQ gain over random mixing after 3,000 requests with at most 10%
exploration. The loop's report already holds one bound, `uniform-logging`: the same learner
trained on 3,000 uniformly logged outcomes. That bound is specific to the learner. This study
asks the question without the loop's learner, on the world files themselves (routing records
with every model's score, from `switchyard datasets import --from open7b|llmrouter`), giving
the routers *more* than the loop has:

  model-means      every model's true mean score (full information, no prompt structure)
  category-oracle  every model's true mean score per source category of the data
                   (e.g. open7b's MATH_prealgebra, llmrouter's agentverse-logicgrid): the
                   category is given, not inferred from the text as the gateway must
  category-budget  the same cells estimated from a budget of outcomes: N requests on
                   random prompts, a share of them explored uniformly over the models (the
                   widest exploration), the rest served by the cheapest model; cell means
                   shrunk toward the model's mean plus the category's difficulty (both
                   learned from every outcome). At --explore 0.1 and at 1.0.
  prompt-oracle    every prompt's true best choice (the ceiling no router reaches)

With --embeddings (JSONL from `switchyard embed`, needs numpy), the category is replaced by
a spherical k-means cluster of the prompt's embedding (k = 8, 16, 48) — what a router can
actually see — and the category rows are repeated as `clusters-K/...`.

Each is scored on a random held-out share of the prompts (several splits) with the AIQ of
eval/src/routing.rs: area under the non-decreasing convex hull of the (normalised cost,
quality) points of a quality - lambda*cost sweep, cost normalised over the single models'
range; random mixing is the hull of the cheapest and the strongest single model. Costs are
each model's price on the prompt's estimated tokens (chars / 4 in, --output-tokens out).

If the loop reports (eval/results/loop-WORLD-s*.json) are present, their full-information
gain over random mixing is printed beside the budget's gains: what the bar needs (90% of
it) against what even the category-given learner gets from the allowed exploration.

    python3 eval/studies/loop_budget.py --world open7b=W1.jsonl --world llmrouter=W2.jsonl \\
        [--splits 3] [--draws 5] [--out eval/results/loop-budget.json]
Run it with `bash eval/studies/loop_budget.sh` (imports the worlds from ../shared/datasets).
"""

import argparse
import glob
import json
import random
import statistics
import sys
from collections import defaultdict


def load_world(path, max_prompts):
    """(category, text, {model: score}) for the first prompts every model scored."""
    prompts, models = [], None
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            scores = {m: o["score"] for m, o in r["outcomes"].items() if o.get("score") is not None}
            if models is None:
                models = sorted(scores)
            if all(m in scores for m in models):
                category = r["source"].split(":", 1)[-1]
                prompts.append((category, r["prompt"], scores))
            if len(prompts) >= max_prompts:
                break
    return models, prompts


def hull_aiq(points, lo, hi):
    """AIQ of eval/src/routing.rs: area under the non-decreasing upper hull, cost in [lo, hi]."""
    hull = []
    for p in sorted(points, key=lambda p: (p[0], -p[1])):
        if hull and hull[-1][0] == p[0]:
            continue
        while len(hull) >= 2:
            (c0, q0), (c1, q1) = hull[-2], hull[-1]
            if (c1 - c0) * (p[1] - q0) - (q1 - q0) * (p[0] - c0) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    best = max(range(len(hull)), key=lambda i: (hull[i][1], -i))
    hull = [((c - lo) / (hi - lo), q) for c, q in hull[: best + 1]]
    area = 0.0
    for (c0, q0), (c1, q1) in zip(hull, hull[1:]):
        x0, x1 = min(max(c0, 0.0), 1.0), min(max(c1, 0.0), 1.0)
        if x1 > x0:
            at = lambda x: q0 + (q1 - q0) * (x - c0) / (c1 - c0)  # noqa: E731
            area += (x1 - x0) * (at(x0) + at(x1)) / 2
    return area + (1 - min(max(hull[-1][0], 0.0), 1.0)) * hull[-1][1]


class Holdout:
    """Held-out prompts' costs and scores, and the AIQ of a router's predictions on them."""

    def __init__(self, prompts, models, prices, output_tokens):
        def cost(m, text):
            p = prices[m]
            return (len(text) / 4 * p["input_per_mtok"] + output_tokens * p["output_per_mtok"]) / 1e6

        self.prompts = prompts
        self.cost = [[cost(m, p[1]) for m in models] for p in prompts]
        self.score = [[p[2][m] for m in models] for p in prompts]
        n = len(prompts)
        self.singles = [
            (sum(c[j] for c in self.cost) / n, sum(q[j] for q in self.score) / n)
            for j in range(len(models))
        ]
        self.lo = min(c for c, _ in self.singles)
        self.hi = max(c for c, _ in self.singles)

    def random_mixing(self):
        cheapest = min(self.singles, key=lambda s: (s[0], -s[1]))
        strongest = max(self.singles, key=lambda s: (s[1], -s[0]))
        return hull_aiq([cheapest, strongest], self.lo, self.hi)

    def aiq(self, predicted):
        """Sweeps lambda over quality - lambda * cost (ties to the cheaper model)."""
        scale = 1.0 / max(self.lo, 1e-12)
        n, points = len(self.prompts), []
        for lam in [0.0] + [scale * 10 ** (e / 8) for e in range(-40, 17)]:
            chosen = [
                max(range(len(q)), key=lambda j: (q[j] - lam * c[j], -c[j]))
                for q, c in zip(predicted, self.cost)
            ]
            points.append((
                sum(self.cost[i][j] for i, j in enumerate(chosen)) / n,
                sum(self.score[i][j] for i, j in enumerate(chosen)) / n,
            ))
        return hull_aiq(points, self.lo, self.hi)


def category_budget(train, models, served, requests, explore, rng):
    """Cell (category, model) means from a budget of outcomes, shrunk toward the model's
    mean plus the category's difficulty; returns predict(category, model)."""
    log = []
    for t in range(requests):
        category, _, scores = train[rng.randrange(len(train))]
        m = rng.choice(models) if rng.random() < explore else served
        log.append((category, m, scores[m]))
    overall = sum(y for _, _, y in log) / len(log)
    per_model = defaultdict(list)
    cells = defaultdict(list)
    for c, m, y in log:
        per_model[m].append(y)
        cells[(c, m)].append(y)
    model_mean = {m: (sum(per_model[m]) + 10 * overall) / (len(per_model[m]) + 10) for m in models}
    residual = defaultdict(list)
    for c, m, y in log:
        residual[c].append(y - model_mean[m])
    difficulty = {c: sum(v) / (len(v) + 5) for c, v in residual.items()}

    def predict(c, m):
        ys = cells.get((c, m), [])
        base = model_mean[m] + difficulty.get(c, 0.0)
        return (sum(ys) + 5 * base) / (len(ys) + 5)

    return predict


def study_split(models, prompts, prices, args, seed):
    rng = random.Random(seed)
    order = list(range(len(prompts)))
    rng.shuffle(order)
    cut = int(len(prompts) * args.holdout)
    held = Holdout([prompts[i] for i in order[:cut]], models, prices, args.output_tokens)
    train = [prompts[i] for i in order[cut:]]
    mean = {m: statistics.fmean(p[2][m] for p in train) for m in models}
    cells = defaultdict(list)
    for c, _, s in train:
        for m in models:
            cells[(c, m)].append(s[m])
    cell_mean = {k: statistics.fmean(v) for k, v in cells.items()}
    cheapest = min(models, key=lambda m: (held.singles[models.index(m)][0], -mean[m]))
    row = lambda f: [[f(p[0], m) for m in models] for p in held.prompts]  # noqa: E731
    result = {
        "random": held.random_mixing(),
        "model-means": held.aiq(row(lambda c, m: mean[m])),
        "category-oracle": held.aiq(row(lambda c, m: cell_mean.get((c, m), mean[m]))),
        "prompt-oracle": held.aiq(held.score),
    }
    for explore in (args.explore, 1.0):
        draws = [
            held.aiq(row(category_budget(train, models, cheapest, args.requests, explore,
                                         random.Random(seed * 1000 + d))))
            for d in range(args.draws)
        ]
        result[f"category-budget@{explore:g}"] = statistics.fmean(draws)
    return result


def kmeans_labels(vectors, k, seed=0, iterations=30):
    """Spherical k-means (cosine) cluster of each unit vector, deterministic for a seed."""
    import numpy as np

    x = np.asarray(vectors, dtype=np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centroids = x[np.random.default_rng(seed).choice(len(x), k, replace=False)].copy()
    for _ in range(iterations):
        labels = np.argmax(x @ centroids.T, axis=1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c = members.sum(axis=0)
                centroids[j] = c / np.linalg.norm(c)
    return [f"cluster-{label}" for label in np.argmax(x @ centroids.T, axis=1)]


def load_embeddings(path):
    """text -> embedding from `switchyard embed` output (lines with an error are skipped)."""
    vectors = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "embedding" in r:
                vectors[r["text"]] = r["embedding"]
    return vectors


def study(models, prompts, prices, args, name, label):
    """Mean over splits of every router's AIQ, keyed by router."""
    splits = []
    for s in range(args.splits):
        print(f"{name}, {label}: split {s + 1}/{args.splits}", file=sys.stderr)
        splits.append(study_split(models, prompts, prices, args, 17 + s))
    return splits, {k: statistics.fmean(sp[k] for sp in splits) for k in splits[0]}


def loop_full_information(world):
    """From the committed loop reports: the mean full-information AIQ gain over random
    mixing, and the best quality per dollar on its curve over the best single model's."""
    gains, ratios = [], []
    for path in sorted(glob.glob(f"eval/results/loop-{world}-s*.json")):
        h = json.load(open(path))["holdout"]
        aiq = {c["name"].split("@")[0]: c["aiq"]["value"] for c in h["contenders"]}
        gains.append(aiq["full-information"] - h["random_aiq"]["value"])
        curve = next(c["curve"] for c in h["contenders"] if c["name"] == "full-information")
        best = max(p["quality"] / p["cost"] for p in curve if p["cost"] > 0)
        ratios.append(best / max(q / c for _, c, q, _ in h["singles"] if c > 0))
    if not gains:
        return None
    return {"reports": len(gains), "gain": statistics.fmean(gains),
            "best_quality_per_dollar_over_best_single": ratios}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", action="append", required=True, help="NAME=FILE.jsonl (prices: eval/prices/NAME.json)")
    ap.add_argument("--splits", type=int, default=3, help="random held-out splits (seeds 17, 18, ...)")
    ap.add_argument("--draws", type=int, default=5, help="budget draws averaged per split")
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--explore", type=float, default=0.1)
    ap.add_argument("--max-prompts", type=int, default=6000)
    ap.add_argument("--output-tokens", type=int, default=200)
    ap.add_argument("--embeddings", action="append", default=[],
                    help="NAME=FILE.jsonl from `switchyard embed` (adds the k-means cluster rows)")
    ap.add_argument("--texts-out", metavar="DIR",
                    help="only write each world's studied prompts to DIR/NAME.texts.jsonl "
                    "(input for `switchyard embed`) and stop")
    ap.add_argument("--out", help="write the figures here as JSON")
    args = ap.parse_args()
    report = {"requests": args.requests, "explore": args.explore, "worlds": {}}
    for spec in args.world:
        name, _, path = spec.partition("=")
        prices = json.load(open(f"eval/prices/{name}.json"))
        models, prompts = load_world(path, args.max_prompts)
        if args.texts_out:
            with open(f"{args.texts_out}/{name}.texts.jsonl", "w") as f:
                for p in prompts:
                    f.write(json.dumps({"text": p[1]}) + "\n")
            continue
        splits, mean = study(models, prompts, prices, args, name, "categories")
        embedded = dict(e.split("=", 1) for e in args.embeddings)
        if name in embedded:
            vectors = load_embeddings(embedded[name])
            kept = [p for p in prompts if p[1] in vectors]
            if len(kept) < len(prompts):
                print(f"{name}: {len(prompts) - len(kept)} prompts without an embedding; "
                      "the cluster rows leave them out", file=sys.stderr)
            for k in (8, 16, 48):
                labels = kmeans_labels([vectors[p[1]] for p in kept], k)
                clustered = [(c, t, sc) for c, (_, t, sc) in zip(labels, kept)]
                _, by_cluster = study(models, clustered, prices, args, name, f"{k} clusters")
                for key, value in by_cluster.items():
                    if key.startswith("category-"):
                        mean[f"clusters-{k}/{key}"] = value - by_cluster["random"] + mean["random"]
        gain = {k: v - mean["random"] for k, v in mean.items() if k != "random"}
        loop = loop_full_information(name)
        report["worlds"][name] = {
            "prompts": len(prompts),
            "models": len(models),
            "categories": len({p[0] for p in prompts}),
            "splits": splits,
            "mean_aiq": mean,
            "mean_gain_over_random": gain,
            "loop_full_information": loop,
        }
        print(f"\n{name}: {len(prompts)} prompts, {len(models)} models, "
              f"{report['worlds'][name]['categories']} categories; AIQ gain over random mixing "
              f"(mean of {args.splits} splits)")
        for k, v in gain.items():
            print(f"  {k:36s} {v:+.4f}")
        if loop is not None:
            print(f"  loop full-information                {loop['gain']:+.4f}  (mean of {loop['reports']} loop "
                  f"reports; the bar needs 90%: {0.9 * loop['gain']:+.4f})")
            ratios = ", ".join(f"{r:.4f}" for r in loop["best_quality_per_dollar_over_best_single"])
            print(f"  full-information's best quality/$ over the best single's: {ratios}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
