#!/usr/bin/env bash
# LPG (paper §7.4, Figure 5): meta-train the Learned Policy Gradient with meta-gradients on
# random gridworlds (all_shortlife), distil it into a same-size and a smaller network, meta-test
# all of them on MinAtar (transfer: every env is out of distribution) with A2C and PPO as
# hand-designed references, and report. No symbolic distillation and no LLM proposal: the
# paper applies neither to LPG (recurrent, and no literature warm start; §6, §7.4).
#
#   SCALE=tiny OUT=runs/lpg-tiny bash examples/lpg.sh
#   SCALE=cpu  OUT=runs/lpg-cpu  bash examples/lpg.sh    # metagrad's smoke preset
#   SCALE=paper OUT=runs/lpg     bash examples/lpg.sh    # Table 9: GPU only (see docs/lpg.md)
#
# Meta-testing uses LPG's rollouts (64 envs x 20 steps, paper Table 3; at tiny scale the
# shared 8 x 32) for every kernel and both references, so their budgets match. Supplement F's
# ES studies on gridworlds (LPO, No Features, OPEN-FF): suppf.sh.
# Re-running continues: finished stages are skipped, interrupted meta-learners resume.
set -euo pipefail
TINY_EVAL_ENVS=breakout # SCALE=tiny's meta-test env
CPU_EVAL_ENVS=asterix,breakout,freeway,spaceinvaders
PAPER_EVAL_SUITE=minatar
: "${OUT:=runs/lpg-${SCALE:-tiny}}"
# shellcheck source-path=SCRIPTDIR source=_scale.sh
source "$(dirname "${BASH_SOURCE[0]}")/_scale.sh"

case "$SCALE" in
tiny)
    METAGRAD=(--preset smoke --meta-steps 2 --num-agents 2 --num-mini-batches 1 --lifetime 4
              --save-every-k 2 --eval-runs 2)
    # LPG's own trainer is slow on MinAtar on a CPU: 2 runs of 2,048 steps per meta-test
    EVAL+=(--num-runs 2 --timesteps 2048)
    ;;
cpu) METAGRAD=(--preset smoke) ;; # 8 agents, 20 meta-steps, lifetime 10
paper) METAGRAD=() ;;             # Table 9: 512 agents, 5,000 meta-steps
esac
if [ "$SCALE" != tiny ]; then EVAL+=(--set num_steps=20 --set num_minibatches=1); fi
# Students are scored by RL on the gridworlds; at cpu scale by the held-out loss alone.
case "$SCALE" in
tiny) DISTIL+=("${RL[@]}") ;;
cpu) DISTIL+=(--num-runs 0) ;;
esac

d="$OUT/grids"
mkdir -p "$d"
stage "$d/lpg.safetensors" \
    metarl train metagrad --algo lpg --envs gridworld/all_shortlife -o "$d/lpg.safetensors" \
    "${METAGRAD[@]}"
stage "$d/same.safetensors" \
    metarl distil "$d/lpg.safetensors" --size same -o "$d/same.safetensors" "${DISTIL[@]}"
stage "$d/smaller.safetensors" \
    metarl distil "$d/lpg.safetensors" --size smaller -o "$d/smaller.safetensors" "${DISTIL[@]}"
for kernel in lpg same smaller; do
    stage "$d/$kernel.eval.json" \
        metarl evaluate "$d/$kernel.safetensors" --algo lpg "${EVAL[@]}" -o "$d/$kernel.eval.json"
done
for reference in a2c ppo; do
    stage "$OUT/$reference.eval.json" \
        metarl evaluate "$reference" "${EVAL[@]}" -o "$OUT/$reference.eval.json"
done
metarl report "$d"/*.eval.json "$OUT/a2c.eval.json" "$OUT/ppo.eval.json" -o "$OUT/report" \
    --force "${REPORT[@]}"

echo "report: $OUT/report/index.html (and report.md beside it); stage times: $OUT/stages.tsv"
