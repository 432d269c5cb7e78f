#!/usr/bin/env bash
# Supplement F (paper Figures 15-17): LPO, No Features and feed-forward OPEN meta-trained with
# evolution strategies on random gridworlds (gridworld/rand_all, Supplement F's ES settings:
# antithetic task sampling, fitness told as is), each distilled into a same-size and a smaller
# network and into a symbolic program, an LLM proposal for each, all meta-tested (with PPO)
# out of distribution, and one report, which draws Figures 15-17 side by side
# (supplement_f.png) because the kernels were meta-trained on gridworlds alone.
#
#   SCALE=tiny OUT=runs/suppf-tiny bash examples/suppf.sh
#   SCALE=cpu  OUT=runs/suppf-cpu  bash examples/suppf.sh
#   SCALE=paper OUT=runs/suppf     LLM_MODEL=o3-mini bash examples/suppf.sh   # GPU-sized
#
# Meta-testing is o.o.d. at every scale: tiny on Breakout and CartPole, cpu on MinAtar and
# CartPole, paper on the ten environments of §6 (--suite paper), as the paper does.
# The LLM stage asks one model for all three algorithms; to replay recorded conversations
# instead, set LLM_REPLAY to a directory holding lpo.json, nofeat.json and open_ff.json
# (`python examples/paper_replies.py ALGO > DIR/ALGO.json` writes the paper's proposals).
# TRAIN_ENVS=... replaces gridworld/rand_all.
# Re-running continues: finished stages are skipped, interrupted meta-learners resume.
set -euo pipefail
: "${OUT:=runs/suppf-${SCALE:-tiny}}"
# shellcheck source-path=SCRIPTDIR source=_scale.sh
source "$(dirname "${BASH_SOURCE[0]}")/_scale.sh"
# shellcheck source-path=SCRIPTDIR source=_study.sh
source "$(dirname "${BASH_SOURCE[0]}")/_study.sh"

# Supplement F's ES (docs/es.md): each antithetic pair meets levels of its own, and OpenAI-ES
# is told the fitness itself rather than centred ranks.
ES+=(--task-sampling antithetic --fitness-shaping identity)
# A rand_all level's episodes last up to 750 steps, so a PPO run's final return (episodes ended
# in its last 5 % of updates) has none to average when the run is short: tiny's runs (1,024
# steps per env) score every episode of the run, cpu's (64 envs, 2,560 steps per env) those of
# their second half. Meta-testing (EVAL, set by _scale.sh) keeps the last 5 %.
case "$SCALE" in
tiny) RL+=(--set final_window=1.0) ;;
cpu) RL+=(--set num_envs=64 --set final_window=0.5) ;;
esac
for algo in lpo nofeat open_ff; do
    es_study "$algo" "$algo:${TRAIN_ENVS:-gridworld/rand_all}" same smaller symbolic llm
done
ppo_and_report "$OUT"/*/*.eval.json
