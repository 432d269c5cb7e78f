#!/usr/bin/env bash
# Recurrent OPEN (paper §7.5, Figure 6): a recurrent OPEN optimiser for the four MinAtar games,
# distilled into same-size and smaller networks on long (100-step) and short (20-step)
# generated rollouts, an LLM proposal warm-started from Adam, all meta-tested (with PPO) on the
# paper's suite, and reported. No symbolic distillation: the paper does not apply it to
# recurrent algorithms (§6).
#
#   SCALE=tiny OUT=runs/open-tiny bash examples/open.sh
#   SCALE=cpu  OUT=runs/open-cpu  bash examples/open.sh
#   SCALE=paper OUT=runs/open OPEN_NPY=multi_OPEN.npy LLM_MODEL=o3-mini bash examples/open.sh
#
# The paper starts from the optimiser released with OPEN (Goldie et al., 2024) rather than
# meta-training one: set OPEN_NPY to that .npy file to import it (the report then normalises
# by PPO, as there is no ES kernel). Without it the optimiser is meta-trained here with ES.
# Studies: cpu and paper meta-train on the four MinAtar games; tiny on Breakout alone (one
# game keeps it to minutes), meta-tested on Breakout and CartPole.
# Re-running continues: finished stages are skipped, interrupted meta-learners resume.
set -euo pipefail
: "${OUT:=runs/open-${SCALE:-tiny}}"
# shellcheck source-path=SCRIPTDIR source=_scale.sh
source "$(dirname "${BASH_SOURCE[0]}")/_scale.sh"

envs=${TRAIN_ENVS:-$MINATAR}
if [ "$SCALE" = tiny ] && [ -z "${TRAIN_ENVS:-}" ]; then envs=breakout; fi
d="$OUT/minatar"
mkdir -p "$d"

if [ -n "${OPEN_NPY:-}" ]; then
    stage "$d/open.safetensors" \
        metarl import open "$OPEN_NPY" --envs "$envs" -o "$d/open.safetensors"
else
    stage "$d/open.safetensors" \
        metarl train es --algo open --envs "$envs" -o "$d/open.safetensors" "${ES[@]}" "${RL[@]}"
fi
for size in same smaller; do
    for rollout in long short; do
        stage "$d/$size-$rollout.safetensors" \
            metarl distil "$d/open.safetensors" --size "$size" --rollout "$rollout" \
            -o "$d/$size-$rollout.safetensors" "${DISTIL[@]}" "${RL[@]}"
    done
done
if llm_configured; then
    stage "$d/llm.safetensors" \
        metarl discover --algo open --envs "$envs" -o "$d/llm.safetensors" \
        "${LLM[@]}" "${DISCOVER[@]}" "${RL[@]}"
fi
for kernel in open same-long same-short smaller-long smaller-short llm; do
    if [ -e "$d/$kernel.safetensors" ]; then
        stage "$d/$kernel.eval.json" \
            metarl evaluate "$d/$kernel.safetensors" --algo open "${EVAL[@]}" \
            -o "$d/$kernel.eval.json"
    fi
done
stage "$OUT/ppo.eval.json" metarl evaluate ppo "${EVAL[@]}" -o "$OUT/ppo.eval.json"
LABELS=()
for size in same smaller; do
    for rollout in long short; do
        name="Same-Size"
        if [ "$size" = smaller ]; then name="Smaller"; fi
        LABELS+=(--label "$size-$rollout.eval.json=$name Distillation (${rollout^} Rollout)")
    done
done
metarl report "$d"/*.eval.json "$OUT/ppo.eval.json" -o "$OUT/report" --force \
    "${LABELS[@]}" "${REPORT[@]}"

echo "report: $OUT/report/index.html (and report.md beside it); stage times: $OUT/stages.tsv"
