# shellcheck shell=bash disable=SC2034  # the variables are read by the scripts that source it
# Sourced by every study script in examples/: the budgets of each stage at SCALE=tiny|cpu|paper,
# the output directory OUT, how to reach a language model, and two small helpers.
#
#   tiny   every stage runs, on toy budgets and shrunken PPO sizes: a few minutes on 2 cores.
#          It checks that the chain fits together; its numbers mean nothing.
#   cpu    the paper's PPO sizes (Table 2) at budgets cut to about an hour on 2 CPU cores
#          (LPO on one MinAtar task: 69 min on 2 cores shared with other jobs, docs/results/);
#          meta-tested on MinAtar and CartPole (EVAL_SUITE=paper adds Brax and Craftax, hours
#          more).
#   paper  the paper's budgets: Table 2's PPO budgets, Table 8's ES (population 64; 800
#          generations, the original scripts' default), §A.3's distillation sweep, Table 10's
#          symbolic search (40 rounds of 10), 30 LLM turns, 16 meta-test seeds on the whole
#          suite. GPU-sized: days to weeks.

: "${SCALE:=tiny}"
EXAMPLES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$EXAMPLES")

MINATAR=asterix,breakout,freeway,spaceinvaders

case "$SCALE" in
tiny)
    # PPO: 8 envs x 32 steps, 2 minibatches, 1 epoch; 8,192 steps (32 updates) per run.
    RL=(--timesteps 8192 --set num_envs=8 --set num_steps=32 --set num_minibatches=2
        --set update_epochs=1)
    ES=(--popsize 4 --num-generations 2 --save-every-k 2 --eval-runs 2 --select best-eval)
    DISTIL=(--lr 0.02 --epochs 1 --iters 100 --batch-size 256 --test-size 1000 --num-runs 2)
    SYMBOLIC=(--rounds 2 --iterations 2 --population 100 --num-points 10000
              --batch-size 1000 --num-runs 2)
    DISCOVER=(--turns 2 --num-runs 2)
    EVAL=(--envs "${EVAL_ENVS:-${TINY_EVAL_ENVS:-breakout,cartpole}}" --num-runs 4 "${RL[@]}")
    REPORT=(--reps 2000)
    ;;
cpu)
    # Table 2's sizes (MinAtar 64 envs x 128 steps); 163,840 steps = 20 updates per run, the
    # least at which every Freeway env ends an episode (2,500 steps) in the final 5 % window.
    RL=(--timesteps 163840)
    ES=(--popsize 16 --num-generations 12 --save-every-k 4 --eval-runs 8 --select best-eval)
    DISTIL=(--epochs 4 --iters 1000 --num-runs 4)             # the paper's 3-lr sweep
    # Table 10's search for 5 rounds, with LPO's population (1,000) for the optimisers too
    SYMBOLIC=(--rounds 5 --population 1000 --num-points 100000 --num-runs 4)
    DISCOVER=(--turns 8 --num-runs 4)
    if [ "${EVAL_SUITE:-}" != "" ]; then
        EVAL=(--suite "$EVAL_SUITE")
    else
        EVAL=(--envs "${EVAL_ENVS:-${CPU_EVAL_ENVS:-$MINATAR,cartpole}}")
    fi
    EVAL+=(--num-runs 16 --config "$EXAMPLES/budgets/cpu.toml")
    REPORT=()
    ;;
paper)
    RL=()                                   # Table 2's budgets (the presets)
    ES=(--select best-eval)                 # Table 8: popsize 64, lr/sigma 3e-2, decay 0.999
    DISTIL=()                               # lr sweep 0.1, 0.02, 0.001; 1e6 Adam steps each
    SYMBOLIC=()                             # Table 10: 40 rounds x 10 iterations
    DISCOVER=(--prompt paper)               # Supplement D's prompts, 30 turns, 8 seeds
    EVAL=(--suite "${EVAL_SUITE:-${PAPER_EVAL_SUITE:-paper}}" --num-runs 16)
    REPORT=()
    ;;
*)
    echo "error: SCALE must be tiny, cpu or paper, got '$SCALE'" >&2
    exit 2
    ;;
esac

# metarl on PATH, else the README's virtual environment (.venv/bin/metarl), else METARL=...
if [ -z "${METARL:-}" ]; then
    if command -v metarl >/dev/null 2>&1; then
        METARL=$(command -v metarl)
    elif [ -x "$ROOT/.venv/bin/metarl" ]; then
        METARL="$ROOT/.venv/bin/metarl"
    else
        echo "error: metarl not found; install it (README.md) or set METARL=/path/to/metarl" >&2
        exit 2
    fi
fi
metarl() { command "$METARL" "$@"; } # `command`: never this function itself (METARL=metarl)

# How `metarl discover` reaches a language model: LLM_REPLAY (a recorded conversation.json,
# served offline), or LLM_BASE_URL and/or LLM_MODEL (an OpenAI-compatible server; a hosted
# one reads its key from OPENAI_API_KEY). With none of them the LLM stage is skipped.
LLM=()
if [ -n "${LLM_REPLAY:-}" ]; then
    LLM=(--replay "$LLM_REPLAY")
else
    if [ -n "${LLM_BASE_URL:-}" ]; then LLM+=(--base-url "$LLM_BASE_URL"); fi
    if [ -n "${LLM_MODEL:-}" ]; then LLM+=(--model "$LLM_MODEL"); fi
fi
llm_configured() {
    if [ ${#LLM[@]} -eq 0 ]; then
        echo "== skip: metarl discover (LLM proposal): no model configured. Set LLM_BASE_URL" \
            "and LLM_MODEL (an OpenAI-compatible server; OPENAI_API_KEY for a hosted one)," \
            "or LLM_REPLAY=path/to/conversation.json to replay a recorded run." >&2
        return 1
    fi
}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# stage OUTPUT COMMAND...: runs COMMAND unless OUTPUT exists, so a stopped script continues where
# it stopped; a meta-learner interrupted mid-run (its OUTPUT.run/ left behind) continues with
# --resume. Each stage's wall time and the load average before and after go to
# $OUT/stages.tsv (the machine may be shared).
stage() {
    local output=$1
    shift
    if [ -e "$output" ]; then
        echo "== skip: $output exists" >&2
        return 0
    fi
    local resume=()
    if [ -d "${output%.safetensors}.run" ]; then resume=(--resume); fi
    echo "== $(date +%T) $* ${resume[*]}" >&2
    local t0=$SECONDS load0
    load0=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo n/a)
    "$@" "${resume[@]}"
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$((SECONDS - t0))" "$load0" \
        "$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo n/a)" "$*" >>"$OUT/stages.tsv"
}

if [ ! -e "$OUT/stages.tsv" ]; then
    printf 'finished_utc\twall_s\tload_before\tload_after\tcommand\n' >"$OUT/stages.tsv"
fi
echo "== $(basename "$0") at SCALE=$SCALE into $OUT ($(nproc) cores, load" \
    "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a))" >&2
