#!/usr/bin/env bash
# The embedded cache (Qdrant Edge) at 10k, 100k and 1M entries of 384-d vectors: insert
# throughput, index-build time, lookup p50/p99 and recall@1 before, during and after the
# build, resident memory, and the verifier's cost per lookup. The peer, in the same
# process on the same vectors: exact search by a flat scan (also the recall reference).
# Writes eval/results/cache-scale.json and prints a table with the ratios.
#
#   bash eval/bench/cache_scale.sh [--sizes 10000,100000,1000000] [--vectors FILE.emb]
#
# Vectors: the real sentence embeddings in .cache/embeddings (written by `switchyard
# train`/`eval`) when there, extended to each size by perturbed copies; else synthetic.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

sizes="10000,100000,1000000"
vectors="$(ls .cache/embeddings/*-384-*.emb 2>/dev/null | head -1 || true)"
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes="$2"; shift 2 ;;
    --vectors) vectors="$2"; shift 2 ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

bash models/fetch.sh encoder >/dev/null
cargo build --release --locked -p switchyard-cache --example cache_scale
bin="${CARGO_TARGET_DIR:-target}/release/examples/cache_scale"
out=eval/results/cache-scale.json
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for n in ${sizes//,/ }; do
  echo "== $n entries"
  # The exact reference is a flat scan per query: fewer queries at 1M keep it to minutes.
  queries=1000; [ "$n" -gt 200000 ] && queries=300
  args=(--entries "$n" --queries "$queries" --dir "$work")
  [ -n "$vectors" ] && args+=(--vectors "$vectors")
  "$bin" "${args[@]}" > "$work/$n.json"
done

python3 - "$work" "$out" "$sizes" <<'EOF'
import json, sys, platform, os
work, out, sizes = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
runs = [json.load(open(os.path.join(work, f"{n}.json"))) for n in sizes]
# Sizes run earlier and not this time are kept (a 1M run takes a while).
try:
    kept = [r for r in json.load(open(out))["runs"] if str(r["entries"]) not in sizes]
except (OSError, ValueError, KeyError):
    kept = []
runs = sorted(kept + runs, key=lambda r: r["entries"])
json.dump({"machine": f"{os.cpu_count()} cores, {platform.machine()}", "runs": runs},
          open(out, "w"), indent=2)
def ms(d, k): return f"{d[k]:.3f}" if d else "-"
print(f"\n{'entries':>9} {'insert/s 1-by-1':>15} {'insert/s batch':>14} {'index s':>8} "
      f"{'p50 ms':>7} {'p99 ms':>7} {'recall@1':>8} {'p99 during build':>16} "
      f"{'exact p50':>9} {'speed-up':>8} {'verifier +p50/+p99 ms':>22} {'RSS MB':>7}")
for r in runs:
    m = r["full_lookup_by_method"]
    extra = "-"
    if "verifier" in m:
        extra = (f"{m['verifier']['p50_ms'] - m['cosine']['p50_ms']:+.3f}/"
                 f"{m['verifier']['p99_ms'] - m['cosine']['p99_ms']:+.3f}")
    print(f"{r['entries']:>9} {r['insert_per_s']['one_by_one']:>15.0f} "
          f"{r['insert_per_s']['batches_of_1000']:>14.0f} {r['index_build_s']:>8.1f} "
          f"{r['lookup']['p50_ms']:>7.3f} {r['lookup']['p99_ms']:>7.3f} {r['recall_at_1']:>8.3f} "
          f"{ms(r['lookup_during_build'], 'p99_ms'):>16} {r['exact_flat_scan']['p50_ms']:>9.3f} "
          f"{r['exact_flat_scan']['p50_ms'] / r['lookup']['p50_ms']:>7.1f}x {extra:>22} "
          f"{r['memory']['peak_rss_mb']:>7.0f}")
for r in runs:
    t = r.get("lookup_with_unindexed_tail")
    if t:
        print(f"{r['entries']:>9} entries + {r['unindexed_tail']:,} not yet indexed: "
              f"lookup p50 {t['p50_ms']:.3f} ms, p99 {t['p99_ms']:.3f} ms")
    b = r.get("lookup_during_tail_build")
    if b:
        print(f"{'':>9} indexing that tail took {r['tail_build_s']:.1f} s; lookups meanwhile: "
              f"p50 {b['p50_ms']:.3f} ms, p99 {b['p99_ms']:.3f} ms (n {b['n']})")
print(f"\nwritten: {out}")
EOF
