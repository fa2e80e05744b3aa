#!/usr/bin/env python3
"""How much can any prompt-only router learn from RouterBench? A cross-validated study.

The routing eval (`switchyard eval routing`) scores the committed scorer on the 333-prompt
held-out split, whose bootstrap intervals are wide (APGR ±0.09). This study asks the
question behind issue 4's targets on all 3,150 RouterBench prompts at once: with k-fold
cross-validation (every prompt predicted by a model that never saw it), what AIQ (11 models)
and GPT-4-1106/Mixtral APGR do several router families reach from the same features the
scorer has, and what would a router reach if it knew how hard each prompt is for the
*other nine* models (their actual outcomes, which no router has)?

Inputs are the repository's own artefacts:
  --records   routing records from `switchyard datasets import --from routerbench`
  --cache     the embedding cache directory that `switchyard eval routing` / `train scorer`
              fill (`<sha16>-384-head64tail.emb`: records of sha256(text)[:16] + 384 f32 LE)

Metrics follow eval/src/routing.rs: AIQ is the area under the non-decreasing convex hull
of the (normalised cost, quality) points of a quality − λ·cost sweep, cost normalised over
the single models' range (estimated cost: each model's mean training cost); APGR is the
area under PGR against strong-call share with every share 0..n a point, the prompts
ranked by predicted gain p_strong − p_weak (the `--policy margin` sweep taken to the limit).
Run it with `bash eval/studies/routerbench_cv.sh` (sets up numpy/scipy/scikit-learn).
"""

import argparse
import glob
import hashlib
import json
import os
import re
import sys
import time

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/mixtral-8x7b-chat"


def load(records_path, cache_dir):
    vectors = {}
    files = glob.glob(os.path.join(cache_dir, "*-384-head64tail.emb"))
    if not files:
        sys.exit(f"{cache_dir}: no *-384-head64tail.emb embedding cache; run "
                 "`switchyard eval routing --test RECORDS` once to fill it")
    record = 16 + 384 * 4
    for path in files:
        data = open(path, "rb").read()
        for i in range(0, len(data) - record + 1, record):
            vectors[data[i:i + 16]] = np.frombuffer(data[i + 16:i + record], dtype="<f4")
    with open(records_path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    models = sorted(recs[0]["outcomes"])
    kept, missing = [], 0
    for r in recs:
        if not all(m in r["outcomes"] for m in models):
            continue
        key = hashlib.sha256(r["prompt"].encode()).digest()[:16]
        if key not in vectors:
            missing += 1
            continue
        kept.append((r, vectors[key]))
    if missing:
        print(f"note: {missing} prompts have no cached embedding and are left out", file=sys.stderr)
    rs = [r for r, _ in kept]
    X = np.stack([v for _, v in kept]).astype(np.float64)
    Y = np.array([[float(r["outcomes"][m]["score"] >= 0.5) for m in models] for r in rs])
    C = np.array([[r["outcomes"][m]["cost_usd"] for m in models] for r in rs])
    src = np.array([r["source"] for r in rs], dtype=object)
    prompts = [r["prompt"] for r in rs]
    return models, X, Y, C, src, prompts


def apgr(rank_score, s, w):
    order = np.argsort(-rank_score, kind="stable")
    n = len(s)
    q = w.mean() + np.concatenate([[0.0], np.cumsum((s - w)[order])]) / n
    return float(((q - w.mean()) / (s.mean() - w.mean())).mean())


def aiq(P, Y, C, train_cost):
    """AIQ of the quality − λ·cost sweep with per-model mean training costs as the estimate."""
    points = []
    for lam in np.concatenate([[0.0], np.geomspace(1e-2, 1e5, 160)]):
        choice = np.argmax(P - lam * train_cost[None, :], axis=1)
        i = np.arange(len(choice))
        points.append((C[i, choice].mean(), Y[i, choice].mean()))
    singles = [C[:, j].mean() for j in range(Y.shape[1])]
    lo, hi = min(singles), max(singles)
    points = sorted(((min(max((c - lo) / (hi - lo), 0.0), 1.0), q) for c, q in points))
    rising, best = [], -1.0
    for c, q in points:
        if q > best:
            rising.append((c, q))
            best = q
    hull = []
    for p in rising:
        while len(hull) >= 2 and (hull[-1][0] - hull[-2][0]) * (p[1] - hull[-2][1]) - (
                hull[-1][1] - hull[-2][1]) * (p[0] - hull[-2][0]) >= 0:
            hull.pop()
        hull.append(p)
    hull = [(0.0, hull[0][1])] + hull + [(1.0, hull[-1][1])]
    return float(sum((c1 - c0) * (q0 + q1) / 2 for (c0, q0), (c1, q1) in zip(hull, hull[1:])))


def standardise(a, b):
    mu, sd = a.mean(0), a.std(0) + 1e-6
    return (a - mu) / sd, (b - mu) / sd


def final_question(prompt):
    """The last question of a few-shot prompt (RouterBench prefixes solved examples)."""
    return re.split(r"\n\n(?=Please answer)|\nAnswer:\n[A-E]\n\n", prompt)[-1]


class Study:
    def __init__(self, models, X, Y, C, src, prompts, folds, seed):
        self.models, self.X, self.Y, self.C, self.src = models, X, Y, C, src
        self.questions = [final_question(p) for p in prompts]
        sources = np.unique(src)
        self.onehot = (src[:, None] == sources[None, :]).astype(float)
        self.s, self.w = models.index(STRONG), models.index(WEAK)
        self.splits = list(KFold(folds, shuffle=True, random_state=seed).split(X))

    def evaluate(self, name, predict, boot=200, with_aiq=True):
        started = time.time()
        P = np.zeros_like(self.Y)
        fold_aiq = []
        for tr, te in self.splits:
            P[te] = predict(tr, te)
            fold_aiq.append(aiq(P[te], self.Y[te], self.C[te], self.C[tr].mean(0)))
        gain = P[:, self.s] - P[:, self.w]
        s, w = self.Y[:, self.s], self.Y[:, self.w]
        rng = np.random.default_rng(0)
        resampled = []
        for _ in range(boot):
            i = rng.integers(0, len(s), len(s))
            resampled.append(apgr(gain[i], s[i], w[i]))
        row = {
            "router": name,
            "aiq": float(np.mean(fold_aiq)) if with_aiq else None,
            "aiq_folds": fold_aiq if with_aiq else None,
            "apgr": apgr(gain, s, w),
            "apgr_ci95": [float(np.percentile(resampled, 2.5)), float(np.percentile(resampled, 97.5))],
        }
        shown = f"AIQ {row['aiq']:.4f}" if with_aiq else "AIQ    —  "
        print(f"{name:<58} {shown}  APGR {row['apgr']:.3f} "
              f"[{row['apgr_ci95'][0]:.3f}, {row['apgr_ci95'][1]:.3f}]  ({time.time() - started:.0f} s)",
              flush=True)
        return row

    # --- router families -------------------------------------------------------------
    def source_means(self, tr, te):
        return np.stack([np.array([self.Y[tr][self.src[tr] == k, j].mean() for k in self.src[te]])
                         for j in range(self.Y.shape[1])], 1)

    def knn(self, tr, te, k):
        Xn = self.X / np.linalg.norm(self.X, axis=1, keepdims=True)
        nearest = np.argsort(-(Xn[te] @ Xn[tr].T), axis=1)[:, :k]
        return self.Y[tr][nearest].mean(1)

    def logistic(self, features_tr, features_te, tr, C):
        return np.stack([LogisticRegression(C=C, max_iter=3000).fit(features_tr, self.Y[tr, j])
                         .predict_proba(features_te)[:, 1] for j in range(self.Y.shape[1])], 1)

    def embedding_logistic(self, tr, te, C):
        a, b = standardise(self.X[tr], self.X[te])
        a = np.hstack([a, 3 * self.onehot[tr]])
        b = np.hstack([b, 3 * self.onehot[te]])
        return self.logistic(a, b, tr, C)

    def lexical_logistic(self, tr, te, C):
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
        a = vec.fit_transform([self.questions[i] for i in tr])
        b = vec.transform([self.questions[i] for i in te])
        a = hstack([a, csr_matrix(self.onehot[tr])]).tocsr()
        b = hstack([b, csr_matrix(self.onehot[te])]).tocsr()
        return self.logistic(a, b, tr, C)

    def low_rank(self, tr, te, rank, l2):
        """Joint logistic factorisation (IRT-like): P = σ(b[source, m] + a_m · (W x))."""
        a, b = standardise(self.X[tr], self.X[te])
        M, dim, ns = self.Y.shape[1], a.shape[1], self.onehot.shape[1]
        Ytr, Otr, n = self.Y[tr], self.onehot[tr], len(tr)

        def unpack(v):
            W = v[:dim * rank].reshape(dim, rank)
            A = v[dim * rank:dim * rank + rank * M].reshape(rank, M)
            B = v[dim * rank + rank * M:].reshape(ns, M)
            return W, A, B

        def loss(v):
            W, A, B = unpack(v)
            T = a @ W
            P = 1 / (1 + np.exp(-(T @ A + Otr @ B)))
            value = -(Ytr * np.log(P + 1e-9) + (1 - Ytr) * np.log(1 - P + 1e-9)).sum() / n
            value += l2 * ((W ** 2).sum() + (A ** 2).sum()) / n
            G = (P - Ytr) / n
            gW = a.T @ (G @ A.T) + 2 * l2 * W / n
            gA = T.T @ G + 2 * l2 * A / n
            return value, np.concatenate([gW.ravel(), gA.ravel(), (Otr.T @ G).ravel()])

        rng = np.random.default_rng(0)
        v0 = np.concatenate([rng.normal(0, 0.01, dim * rank), rng.normal(0, 0.1, rank * M), np.zeros(ns * M)])
        W, A, B = unpack(minimize(loss, v0, jac=True, method="L-BFGS-B", options={"maxiter": 500}).x)
        return 1 / (1 + np.exp(-((b @ W) @ A + self.onehot[te] @ B)))

    def other_models_bound(self, tr, te):
        """Not a router: the other nine models' actual outcomes on the prompt as features.

        Only the pair's two predictions are meaningful (the others would see their own
        outcome), so only its APGR is reported."""
        others = [j for j in range(self.Y.shape[1]) if j not in (self.s, self.w)]
        F = np.hstack([self.Y[:, others], self.onehot])
        P = np.zeros((len(te), self.Y.shape[1]))
        for j in (self.s, self.w):
            P[:, j] = LogisticRegression(C=1.0, max_iter=2000).fit(F[tr], self.Y[tr, j]).predict_proba(F[te])[:, 1]
        return P


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", required=True, help="RouterBench routing records (JSONL)")
    parser.add_argument("--cache", required=True, help="embedding cache directory (.cache/embeddings)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args()

    models, X, Y, C, src, prompts = load(args.records, args.cache)
    for m in (STRONG, WEAK):
        if m not in models:
            sys.exit(f"{args.records}: no outcomes for {m}; these are RouterBench records?")
    st = Study(models, X, Y, C, src, prompts, args.folds, args.seed)
    print(f"{len(Y)} prompts, {len(models)} models, {args.folds}-fold cross-validation (seed {args.seed})\n")
    rows = [st.evaluate("per-source mean scores", st.source_means)]
    rows += [st.evaluate(f"kNN on the embeddings, k={k}", lambda tr, te, k=k: st.knn(tr, te, k))
             for k in (25, 50, 100, 200)]
    rows += [st.evaluate(f"logistic per model on the embeddings, C={c:g}",
                         lambda tr, te, c=c: st.embedding_logistic(tr, te, c)) for c in (3e-4, 1e-3, 3e-3)]
    rows += [st.evaluate(f"low-rank joint logistic, rank {r}, l2 {l2:g}",
                         lambda tr, te, r=r, l2=l2: st.low_rank(tr, te, r, l2)) for r, l2 in ((4, 100), (8, 100))]
    rows += [st.evaluate(f"logistic per model on char 2-5-gram TF-IDF, C={c:g}",
                         lambda tr, te, c=c: st.lexical_logistic(tr, te, c)) for c in (0.3, 1.0)]
    rows.append(st.evaluate("blend: embedding logistic + TF-IDF logistic",
                            lambda tr, te: (st.embedding_logistic(tr, te, 1e-3) + st.lexical_logistic(tr, te, 1.0)) / 2))
    rows.append(st.evaluate("BOUND (not a router): the other 9 models' actual outcomes",
                            st.other_models_bound, with_aiq=False))
    oracle = {"router": "oracle", "aiq": None,
              "apgr": apgr(Y[:, st.s] - Y[:, st.w], Y[:, st.s], Y[:, st.w])}
    print(f"{'oracle (strong exactly where it alone is right)':<58} APGR {oracle['apgr']:.3f}")
    rows.append(oracle)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"prompts": len(Y), "folds": args.folds, "seed": args.seed, "strong": STRONG,
                       "weak": WEAK, "rows": rows}, f, indent=1)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
