"""GPTCache, side by side with Switchyard's cache, on the same pairs with the same encoder.

Input: the pairs `switchyard eval cache --export-pairs` evaluated (text_a, text_b, label and
Switchyard's verdicts) and the embeddings `switchyard embed` made of their texts. For every
pair a fresh GPTCache (sqlite + faiss, SearchDistanceEvaluation: its default similarity
pipeline) stores text_a and is asked for text_b, with the embedding function returning the
same all-MiniLM-L6-v2 vectors Switchyard uses. The evaluation's rank is recorded, and the
hit decision GPTCache makes at each threshold (`rank >= threshold * max_distance`) is swept
offline. GPTCache's faiss index returns squared L2 distances, so for unit vectors its
threshold t is cosine 2t - 1: each of Switchyard's cosine thresholds is compared with
GPTCache at the equivalent t.

Prints both precision/recall curves and writes them as JSON.
"""

import argparse
import json
import sys
import tempfile
import time

import numpy as np
from gptcache import Cache, Config
from gptcache.adapter.api import get, put
from gptcache.manager import CacheBase, VectorBase, get_data_manager
from gptcache.processor.pre import get_prompt
from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation


class RecordingEvaluation(SearchDistanceEvaluation):
    """GPTCache's own evaluation, remembering the rank it gave."""

    last = None

    def evaluation(self, src_dict, cache_dict, **kwargs):
        rank = super().evaluation(src_dict, cache_dict, **kwargs)
        RecordingEvaluation.last = rank
        return rank


def curve(pairs, scores, thresholds):
    rows = []
    pos = sum(p["label"] for p in pairs)
    neg = len(pairs) - pos
    for t in thresholds:
        tp = sum(1 for p, s in zip(pairs, scores) if s is not None and s >= t and p["label"])
        fp = sum(1 for p, s in zip(pairs, scores) if s is not None and s >= t and not p["label"])
        rows.append({
            "threshold": round(t, 4),
            "recall": tp / pos if pos else 0.0,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "false_hit_rate": fp / neg if neg else 0.0,
            "hits": tp + fp,
        })
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", required=True, help="JSONL from switchyard eval cache --export-pairs")
    ap.add_argument("--embeddings", required=True, help="JSONL from switchyard embed over the pair texts")
    ap.add_argument("--out", required=True)
    ap.add_argument("--from-t", type=float, default=0.80)
    ap.add_argument("--to-t", type=float, default=0.99)
    ap.add_argument("--step", type=float, default=0.01)
    ap.add_argument("--target", type=float, default=0.90, help="target precision for the summary")
    args = ap.parse_args()

    pairs = [json.loads(l) for l in open(args.pairs) if l.strip()]
    vectors = {}
    for line in open(args.embeddings):
        if line.strip():
            row = json.loads(line)
            vectors[row["text"]] = np.asarray(row["embedding"], dtype="float32")
    missing = [p for p in pairs if p["text_a"] not in vectors or p["text_b"] not in vectors]
    if missing:
        sys.exit(f"{len(missing)} pair texts have no embedding: embed every text_a and text_b")

    ranks = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(pairs):
            cache = Cache()
            cache.init(
                pre_embedding_func=get_prompt,
                embedding_func=lambda text, **_: vectors[text],
                data_manager=get_data_manager(
                    CacheBase("sqlite", sql_url="sqlite:///:memory:"),
                    VectorBase("faiss", dimension=384, index_path=f"{tmp}/faiss-{i}.index"),
                ),
                similarity_evaluation=RecordingEvaluation(),
                config=Config(similarity_threshold=0.0),
            )
            put(p["text_a"], "stored answer", cache_obj=cache)
            RecordingEvaluation.last = None
            answer = get(p["text_b"], cache_obj=cache)
            # max_distance is 4.0: rank / 4 is GPTCache's threshold scale.
            ranks.append(RecordingEvaluation.last / 4.0 if answer is not None else None)
    elapsed = time.time() - started

    n = int(round((args.to_t - args.from_t) / args.step)) + 1
    cosines = [args.from_t + i * args.step for i in range(n)]
    ours = {}
    for method in ("cosine", "guard"):
        scores = []
        for p in pairs:
            if p["exact"]:
                scores.append(1.0)
            elif p["cosine"] is None or (method == "guard" and p["veto"] is not None):
                scores.append(None)
            else:
                scores.append(p["cosine"])
        ours[method] = curve(pairs, scores, cosines)
    gpt = curve(pairs, ranks, [(1 + c) / 2 for c in cosines])
    for row, c in zip(gpt, cosines):
        row["cosine_equivalent"] = round(c, 4)

    print(f"{len(pairs)} pairs ({sum(p['label'] for p in pairs)} duplicates); GPTCache {elapsed / len(pairs) * 1e3:.2f} ms per pair (fresh cache, put, get)")
    print(f"{'cosine':>7} | {'GPTCache P':>10} {'R':>6} | {'Switchyard cosine P':>19} {'R':>6} | {'+guard P':>8} {'R':>6}")
    for g, c, s in zip(gpt, ours["cosine"], ours["guard"]):
        print(f"{g['cosine_equivalent']:>7.2f} | {g['precision']:>10.3f} {g['recall']:>6.3f} | {c['precision']:>19.3f} {c['recall']:>6.3f} | {s['precision']:>8.3f} {s['recall']:>6.3f}")
    vscores = [1.0 if p["exact"] else (None if p["veto"] is not None else p["probability"]) for p in pairs]
    ours["verifier"] = curve(pairs, vscores, [i / 100 for i in range(1, 100)])
    print(f"\nmost recall at precision >= {args.target:.2f} (same pairs, same encoder):")
    for name, rows in (("GPTCache (faiss + SearchDistanceEvaluation)", gpt), ("Switchyard cosine", ours["cosine"]),
                       ("Switchyard cosine + guard", ours["guard"]), ("Switchyard guard + verifier", ours["verifier"])):
        ok = [r for r in rows if r["precision"] >= args.target and r["hits"] > 0]
        best = max(ok, key=lambda r: r["recall"]) if ok else None
        if best:
            print(f"  {name:<45} recall {best['recall']:.3f} (precision {best['precision']:.3f}, threshold {best['threshold']})")
        else:
            print(f"  {name:<45} never reaches it in the swept range")
    with open(args.out, "w") as f:
        json.dump({"pairs": len(pairs), "gptcache": gpt, "switchyard_cosine": ours["cosine"],
                   "switchyard_guard": ours["guard"], "switchyard_verifier": ours["verifier"], "gptcache_ms_per_pair": elapsed / len(pairs) * 1e3}, f, indent=1)


if __name__ == "__main__":
    main()
