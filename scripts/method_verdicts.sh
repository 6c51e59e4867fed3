#!/usr/bin/env bash
# The verdicts of leaderboards/mini-methods/ (Makefile: leaderboard-methods): `gaia-bench compare` of
# each seed method against its control, every arm at the same number of fine-tuning steps.
# Usage: method_verdicts.sh STORE ITERS OUT.md
set -euo pipefail
store=$1 iters=$2 out=$3
gb=${GAIA_BENCH:-.venv/bin/gaia-bench}
pair() {  # TITLE, then the arguments of compare
  local title=$1; shift
  printf '\n## %s\n\n' "$title"
  "$gb" compare --store "$store" --format markdown "$@"
}
{
  printf '# Seed methods against their controls (mini suite, %s fine-tuning steps each)\n\n' "$iters"
  printf 'Made by `make leaderboard-methods` (scripts/method_verdicts.sh) from `%s`.\n' "$store"
  printf 'Every arm trains for exactly %s steps (`--hp iters=%s`: no floor, no early stop before the last\n' "$iters" "$iters"
  printf 'step; the best held-out weights are tested), so no arm gains from a longer schedule.\n'
  pair "TSDS: matched selection (A) against random upstream images, same budget (B)" \
    --a adapt=tsds,hp.mode=top-k,hp.iters="$iters" --b adapt=tsds,hp.mode=random,hp.iters="$iters"
  pair "TSDS (A) against finetune at equal steps (B)" \
    --a adapt=tsds,hp.mode=top-k,hp.iters="$iters" --b adapt=finetune,hp.iters="$iters"
  pair "TSDS's random control (A) against finetune at equal steps (B): extra images alone" \
    --a adapt=tsds,hp.mode=random,hp.iters="$iters" --b adapt=finetune,hp.iters="$iters"
  pair "MF, multi-stage fine-tuning with a VQ-GAN (A), against finetune at equal steps (B)" \
    --a adapt=mf,hp.iters="$iters" --b adapt=finetune,hp.iters="$iters"
  pair "VQ-GAN replay (A) against finetune at equal steps (B)" \
    --a adapt=vqgan-replay,hp.iters="$iters" --b adapt=finetune,hp.iters="$iters"
} > "$out"
echo "wrote $out"
