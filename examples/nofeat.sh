#!/usr/bin/env bash
# No Features (paper §7.2, Figure 3): meta-train the No Features optimiser with evolution
# strategies, distil it into a same-size and a smaller network, distil it into a symbolic
# program, ask a language model for one (warm-started from SGD), meta-test all of them (and
# PPO) on the paper's suite, and report.
#
#   SCALE=tiny OUT=runs/nofeat-tiny bash examples/nofeat.sh
#   SCALE=cpu  OUT=runs/nofeat-cpu  bash examples/nofeat.sh
#   SCALE=paper OUT=runs/nofeat     LLM_MODEL=o3-mini bash examples/nofeat.sh   # GPU-sized
#
# Studies: paper runs both of the paper's, MinAtar (all four games, multi-task) and Ant; cpu
# meta-trains on the four MinAtar games; tiny on Breakout alone (one game keeps it to minutes).
# TRAIN_ENVS=... picks your own set.
# Re-running continues: finished stages are skipped, interrupted meta-learners resume.
set -euo pipefail
: "${OUT:=runs/nofeat-${SCALE:-tiny}}"
# shellcheck source-path=SCRIPTDIR source=_scale.sh
source "$(dirname "${BASH_SOURCE[0]}")/_scale.sh"
# shellcheck source-path=SCRIPTDIR source=_study.sh
source "$(dirname "${BASH_SOURCE[0]}")/_study.sh"

training_sets "minatar:$MINATAR"
for s in "${STUDIES[@]}"; do
    es_study nofeat "$s" same smaller symbolic llm
done
ppo_and_report "$OUT"/*/*.eval.json
