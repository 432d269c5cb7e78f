#!/usr/bin/env bash
# LPO (paper §7.1, Figure 2): meta-train an LPO drift with evolution strategies, distil it into
# a same-size and a smaller network, distil it into a symbolic program, ask a language model
# for one, meta-test all of them (and PPO) on the paper's suite, and report.
#
#   SCALE=tiny OUT=runs/lpo-tiny bash examples/lpo.sh
#   SCALE=cpu  OUT=runs/lpo-cpu  bash examples/lpo.sh    # 69 min on 2 busy cores (docs/results)
#   SCALE=paper OUT=runs/lpo     LLM_MODEL=o3-mini bash examples/lpo.sh   # GPU-sized
#
# Studies: tiny and cpu meta-train on one MinAtar task (Breakout; TRAIN_ENVS=spaceinvaders
# picks another); paper runs both of the paper's studies, MinAtar (all four games) and Ant.
# Re-running continues: finished stages are skipped, interrupted meta-learners resume.
set -euo pipefail
: "${OUT:=runs/lpo-${SCALE:-tiny}}"
# shellcheck source-path=SCRIPTDIR source=_scale.sh
source "$(dirname "${BASH_SOURCE[0]}")/_scale.sh"
# shellcheck source-path=SCRIPTDIR source=_study.sh
source "$(dirname "${BASH_SOURCE[0]}")/_study.sh"

training_sets "breakout:breakout"
for s in "${STUDIES[@]}"; do
    es_study lpo "$s" same smaller symbolic llm
done
ppo_and_report "$OUT"/*/*.eval.json
