#!/usr/bin/env bash
# Feed-forward OPEN (paper §7.3, Figure 4): meta-train feed-forward OPEN with evolution
# strategies, distil it into a same-size and a smaller network, distil it into a symbolic
# program, ask a language model for one (warm-started from SGD), meta-test all of them (and
# PPO) on the paper's suite, and report.
#
#   SCALE=tiny OUT=runs/open_ff-tiny bash examples/open_ff.sh
#   SCALE=cpu  OUT=runs/open_ff-cpu  bash examples/open_ff.sh
#   SCALE=paper OUT=runs/open_ff     LLM_MODEL=o3-mini bash examples/open_ff.sh   # GPU-sized
#
# Studies: paper runs both of the paper's, MinAtar (all four games, multi-task) and Ant; cpu
# meta-trains on the four MinAtar games; tiny on Breakout alone (one game keeps it to minutes).
# TRAIN_ENVS=... picks your own set.
# Re-running continues: finished stages are skipped, interrupted meta-learners resume.
set -euo pipefail
: "${OUT:=runs/open_ff-${SCALE:-tiny}}"
# shellcheck source-path=SCRIPTDIR source=_scale.sh
source "$(dirname "${BASH_SOURCE[0]}")/_scale.sh"

if [ -n "${TRAIN_ENVS:-}" ]; then
    STUDIES=("custom:$TRAIN_ENVS")
elif [ "$SCALE" = paper ]; then
    STUDIES=("minatar:$MINATAR" "ant:ant")
elif [ "$SCALE" = cpu ]; then
    STUDIES=("minatar:$MINATAR")
else
    STUDIES=("breakout:breakout")
fi

study() { # study NAME TRAINING_ENVS: the chain of Figure 4 for one meta-training set
    local d="$OUT/$1" envs=$2
    mkdir -p "$d"
    stage "$d/es.safetensors" \
        metarl train es --algo open_ff --envs "$envs" -o "$d/es.safetensors" "${ES[@]}" "${RL[@]}"
    stage "$d/same.safetensors" \
        metarl distil "$d/es.safetensors" --size same -o "$d/same.safetensors" \
        "${DISTIL[@]}" "${RL[@]}"
    stage "$d/smaller.safetensors" \
        metarl distil "$d/es.safetensors" --size smaller -o "$d/smaller.safetensors" \
        "${DISTIL[@]}" "${RL[@]}"
    stage "$d/symbolic.safetensors" \
        metarl symbolic "$d/es.safetensors" -o "$d/symbolic.safetensors" \
        "${SYMBOLIC[@]}" "${RL[@]}"
    if llm_configured; then
        stage "$d/llm.safetensors" \
            metarl discover --algo open_ff --envs "$envs" -o "$d/llm.safetensors" \
            "${LLM[@]}" "${DISCOVER[@]}" "${RL[@]}"
    fi
    for kernel in es same smaller symbolic llm; do
        if [ -e "$d/$kernel.safetensors" ]; then
            stage "$d/$kernel.eval.json" \
                metarl evaluate "$d/$kernel.safetensors" --algo open_ff "${EVAL[@]}" \
                -o "$d/$kernel.eval.json"
        fi
    done
}

for s in "${STUDIES[@]}"; do
    study "${s%%:*}" "${s#*:}"
done
stage "$OUT/ppo.eval.json" metarl evaluate ppo "${EVAL[@]}" -o "$OUT/ppo.eval.json"
metarl report "$OUT"/*/*.eval.json "$OUT/ppo.eval.json" -o "$OUT/report" --force "${REPORT[@]}"

echo "report: $OUT/report/index.html (and report.md beside it); stage times: $OUT/stages.tsv"
