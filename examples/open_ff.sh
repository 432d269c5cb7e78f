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
# shellcheck source-path=SCRIPTDIR source=_study.sh
source "$(dirname "${BASH_SOURCE[0]}")/_study.sh"

training_sets "minatar:$MINATAR"
for s in "${STUDIES[@]}"; do
    es_study open_ff "$s" same smaller symbolic llm
done
ppo_and_report "$OUT"/*/*.eval.json
