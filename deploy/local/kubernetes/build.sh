#!/usr/bin/env bash
# Build the local Kubernetes control plane from the Go module proxy.
#
# Why from source: a test cluster must run the real kube-apiserver, scheduler
# and controller-manager (the project's standard: a real Kubernetes API server
# in integration tests), and released binaries are not fetchable from the
# package registries this project may use; the Go module proxy is.
#
# Output: $DEST/bin/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kwok,kustomize}
# and $DEST/bin/.complete (the build marker the test fixture waits for), or
# $DEST/bin/.failed saying where it stopped.
# DEST defaults to ${TOKENPOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenpools}/kubernetes/<version>.
# Binaries are built one at a time: the linker peaks near 3 GB per binary.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
if [[ -n "${TOKENPOOLS_CACHE:-}" ]]; then CACHE="$TOKENPOOLS_CACHE"; else CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tokenpools"; fi
DEST="${1:-$CACHE/kubernetes/$K8S_VERSION}"
BIN="$DEST/bin"
SRC="$DEST/src"
MARKER="$BIN/.complete"

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

ALL=(etcd kube-apiserver kwok kwok-stages.yaml kube-scheduler kube-controller-manager kustomize)
built() { local b; for b in "${ALL[@]}"; do [[ -s "$BIN/$b" ]] || return 1; done; }
if [[ -f "$MARKER" ]] && built; then
  echo "already built: $BIN"
  exit 0
fi
mkdir -p "$BIN" "$SRC"
rm -f "$MARKER" "$BIN/.failed"
trap 'echo "build.sh failed (line $LINENO); see its output" >"$BIN/.failed"' ERR
command -v go >/dev/null || { echo "go toolchain not found on PATH (needed to build the control plane)" >&2; exit 2; }

stamp() { date -u +%H:%M:%S; }

# wrapper MODULE-DIR: an empty module used only to pin and build one upstream tree.
wrapper() {
  local dir="$SRC/$1"
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'module tokenpools.local/%s\n\ngo 1.26\n' "$1" >"$dir/go.mod"
  echo "$dir"
}

# go_install NAME PACKAGE [LDFLAGS]: build PACKAGE of the module in the current directory,
# stripped, into $BIN/NAME; the binary appears only once whole (an interrupted build leaves
# no half-written file that the `-x` checks would take for done).
go_install() {
  go build -trimpath -ldflags "-s -w${3:+ $3}" -o "$BIN/$1.tmp" "$2" && mv "$BIN/$1.tmp" "$BIN/$1"
}

# build_module NAME MODULE VERSION PACKAGE: NAME from PACKAGE of MODULE@VERSION, once.
build_module() {
  local name="$1" module="$2" version="$3" package="$4"
  [[ -x "$BIN/$name" ]] && return 0
  echo "$(stamp) $name $version"
  local dir; dir=$(wrapper "$name")
  (cd "$dir" && go get "$module@$version" && go_install "$name" "$package")
}

# kwok needs its "stages" (how fake nodes and pods progress) as config; its module ships the
# standard fast ones (node init, heartbeat through a Lease, pod ready/complete/delete).
kwok_stages() {
  [[ -s "$BIN/kwok-stages.yaml" ]] && return 0
  local mod
  mod=$(cd "$SRC" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
        sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  local f out="$BIN/kwok-stages.yaml.tmp"
  : >"$out"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    printf -- '---\n' >>"$out"; cat "$mod/kustomize/stage/$f" >>"$out"
  done
  mv "$out" "$BIN/kwok-stages.yaml"
}

kube_module() {
  local dir="$SRC/kubernetes"
  [[ -f "$dir/.ready" ]] && { echo "$dir"; return 0; }
  dir=$(wrapper kubernetes)
  local gomod
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    # k8s.io/kubernetes replaces every staging module with a local path; a
    # consumer must point each one at its published tag instead.
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$gomod"
    printf ')\n'
  } >>"$dir/go.mod"
  (cd "$dir" && go mod download k8s.io/kubernetes >/dev/null) && touch "$dir/.ready"
  echo "$dir"
}

# kustomize renders deploy/k8s for the manifest test; k8s.io/kubernetes already pins it.
build_kustomize() {
  [[ -x "$BIN/kustomize" ]] && return 0
  echo "$(stamp) kustomize"
  local dir; dir=$(kube_module)
  (cd "$dir" && go_install kustomize sigs.k8s.io/kustomize/kustomize/v5)
}

build_kube() {
  local name="$1"
  [[ -x "$BIN/$name" ]] && return 0
  echo "$(stamp) $name $K8S_VERSION"
  local dir; dir=$(kube_module)
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  (cd "$dir" && go_install "$name" "k8s.io/kubernetes/cmd/$name" \
     "-X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean")
}

start=$(date +%s)
build_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
build_kube kube-apiserver
build_module kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
kwok_stages
build_kube kube-scheduler
build_kube kube-controller-manager
build_kustomize
printf 'kubernetes=%s etcd=%s kwok=%s seconds=%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$(( $(date +%s) - start ))" >"$MARKER"
echo "$(stamp) done in $(( $(date +%s) - start ))s: $BIN"
