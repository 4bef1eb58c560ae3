# shellcheck shell=bash
# Helpers for test/e2e/run.sh (kind) and test/cluster/e2e.sh (the local single-node
# cluster), sourced. Kept apart so the model artifact can be built and pushed without a
# cluster (test/integration/helm/e2e-script.test.ts does, against a real registry on loopback).
# The pod checks below expect the caller to define `k` (kubectl for its cluster), `log`,
# `fail`, TEST_NS and WORK.

# The files of the test model, relative to the model directory; `sha256sum` of these is what
# the pods must see.
E2E_MODEL_FILES=(model.safetensors config.json generation_config.json tokenizer.json 1_Pooling/config.json README.md)

# u64 little-endian, as the safetensors header length is stored.
le_u64() {
  local n=$1 i
  for i in 0 1 2 3 4 5 6 7; do
    printf '%b' "\\x$(printf '%02x' $(((n >> (8 * i)) & 255)))"
  done
}

# make_model DIR: a small but real model layout: a valid safetensors file (one 512x512 F32
# tensor of random values, 1 MiB), the usual JSON side files and a nested directory.
make_model() {
  local dir=$1
  mkdir -p "$dir/1_Pooling"
  local header='{"weight":{"dtype":"F32","shape":[512,512],"data_offsets":[0,1048576]}}'
  {
    le_u64 "${#header}"
    printf '%s' "$header"
    head -c 1048576 /dev/urandom
  } >"$dir/model.safetensors"
  cat >"$dir/config.json" <<'JSON'
{"architectures": ["E2eTinyModel"], "hidden_size": 512, "num_hidden_layers": 1, "torch_dtype": "float32", "model_type": "e2e-tiny"}
JSON
  printf '{"do_sample": false, "max_new_tokens": 16, "nonce": "%s"}\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$dir/generation_config.json"
  cat >"$dir/tokenizer.json" <<'JSON'
{"version": "1.0", "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "model": 2, "csi": 3}, "unk_token": "[UNK]"}}
JSON
  printf '{"word_embedding_dimension": 512, "pooling_mode_mean_tokens": true}\n' >"$dir/1_Pooling/config.json"
  printf '# e2e-tiny\n\nA throwaway model for the model-csi kind e2e test.\n' >"$dir/README.md"
  # Readable by the oras container whatever uid it runs as.
  chmod -R a+rX "$dir"
}

# layer_media_type PATH: the ModelPack layer type of a file (weights, weight configs, docs).
layer_media_type() {
  case "$1" in
    *.safetensors | *.bin | *.gguf | *.pt) echo application/vnd.cncf.model.weight.v1.raw ;;
    *.md | *.txt) echo application/vnd.cncf.model.doc.v1.raw ;;
    *) echo application/vnd.cncf.model.weight.config.v1.raw ;;
  esac
}

# push_model DIR REFERENCE ORAS_COMMAND...: pushes DIR's E2E_MODEL_FILES as a ModelPack
# artifact (one `.raw` layer per file, path in org.cncf.model.filepath, as modctl does) with
# the given oras command, run with DIR as its working directory. Prints the manifest digest.
push_model() {
  local dir=$1 ref=$2
  shift 2
  local file diff_ids="" layers=() sep=""
  # Two side files oras reads, dot-named so they are not mistaken for model files.
  {
    # shellcheck disable=SC2016 # "$manifest" is oras's literal key for manifest annotations
    printf '{"$manifest": {"org.opencontainers.image.title": "e2e-tiny"}'
    for file in "${E2E_MODEL_FILES[@]}"; do
      printf ', "%s": {"org.cncf.model.filepath": "%s"}' "$file" "$file"
    done
    printf '}\n'
  } >"$dir/.annotations.json"
  for file in "${E2E_MODEL_FILES[@]}"; do
    diff_ids+="$sep\"sha256:$(sha256sum "$dir/$file" | cut -d' ' -f1)\""
    sep=","
    layers+=("$file:$(layer_media_type "$file")")
  done
  printf '{"descriptor": {"name": "e2e-tiny", "createdAt": "1970-01-01T00:00:00Z"}, "config": {"format": "safetensors"}, "modelfs": {"type": "layers", "diffIds": [%s]}}\n' "$diff_ids" >"$dir/.config.json"
  chmod a+r "$dir/.annotations.json" "$dir/.config.json"

  local out
  out=$(cd "$dir" && "$@" push --plain-http \
    --artifact-type application/vnd.cncf.model.manifest.v1+json \
    --config .config.json:application/vnd.cncf.model.config.v1+json \
    --annotation-file .annotations.json \
    "$ref" "${layers[@]}" 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
  printf '%s\n' "$out" | sed -n 's/^Digest: *\(sha256:[0-9a-f]\{64\}\).*/\1/p'
}

# expected_digests DIR: `sha256sum` lines of the model files, paths relative to the model root.
expected_digests() {
  (cd "$1" && sha256sum "${E2E_MODEL_FILES[@]}")
}

# check_digests POD [MODEL_DIR]: sha256sum of every model file inside POD equals the local
# one (MODEL_DIR defaults to $WORK/model).
check_digests() {
  local got model_dir=${2:-$WORK/model}
  got="$(k -n "$TEST_NS" exec "$1" -- sh -c "cd /models && sha256sum ${E2E_MODEL_FILES[*]}")" ||
    fail "$1: sha256sum inside the pod failed"
  if [ "$got" != "$(expected_digests "$model_dir")" ]; then
    printf 'expected:\n%s\ngot:\n%s\n' "$(expected_digests "$model_dir")" "$got" >&2
    fail "$1: file digests differ from what was pushed"
  fi
  log "$1: all ${#E2E_MODEL_FILES[@]} files match their sha256"
}

# check_read_only POD: creating or overwriting a file under the mount fails with EROFS.
check_read_only() {
  local out
  if out="$(k -n "$TEST_NS" exec "$1" -- touch /models/written-by-e2e 2>&1)"; then
    fail "$1: touch /models/written-by-e2e succeeded on a model volume"
  fi
  case "$out" in
    *"Read-only file system"*) ;;
    *) fail "$1: touch failed, but not with EROFS: $out" ;;
  esac
  if k -n "$TEST_NS" exec "$1" -- sh -c 'echo x > /models/config.json' >/dev/null 2>&1; then
    fail "$1: overwriting /models/config.json succeeded"
  fi
  k -n "$TEST_NS" exec "$1" -- sh -c 'grep " /models " /proc/mounts' | grep -q ' ro[, ]' ||
    fail "$1: /models is not mounted ro"
  log "$1: writes refused (read-only file system)"
}

# delete_claim PVC PV: delete the claim and wait until its PV is gone (DeleteVolume, Delete
# reclaim policy).
delete_claim() {
  k -n "$TEST_NS" delete pvc "$1" --wait --timeout "$TIMEOUT" >/dev/null
  local _
  for _ in $(seq 60); do
    k get pv "$2" >/dev/null 2>&1 || return 0
    sleep 2
  done
  fail "PV $2 was not deleted (DeleteVolume)"
}
