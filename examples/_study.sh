# shellcheck shell=bash disable=SC2034  # STUDIES is read by the scripts that source it
# Sourced after _scale.sh by the studies of a feed-forward kernel meta-trained with ES (lpo.sh,
# nofeat.sh, open_ff.sh, suppf.sh): which meta-training sets each scale runs, the chain of the
# paper's Figures 2-4 (and 15-17) for one set, and the PPO reference and report that end every
# study.

# training_sets CPU_SET: the meta-training sets to run, as NAME:ENVS, into STUDIES. TRAIN_ENVS
# if set (NAME "custom"); else at paper scale the paper's two studies, MinAtar (all four games,
# multi-task) and Ant; at cpu scale CPU_SET; at tiny scale Breakout alone (one game keeps it to
# minutes).
training_sets() {
    if [ -n "${TRAIN_ENVS:-}" ]; then
        STUDIES=("custom:$TRAIN_ENVS")
    elif [ "$SCALE" = paper ]; then
        STUDIES=("minatar:$MINATAR" "ant:ant")
    elif [ "$SCALE" = cpu ]; then
        STUDIES=("$1")
    else
        STUDIES=("breakout:breakout")
    fi
}

# es_study ALGO NAME:ENVS STAGE...: one meta-training set, into $OUT/NAME/. Meta-trains ALGO
# with ES on ENVS (es.safetensors), then runs each STAGE, in the order given:
#   same      distil the ES kernel into a same-size network      (same.safetensors)
#   smaller   distil it into a smaller network                   (smaller.safetensors)
#   symbolic  distil it into a symbolic program                  (symbolic.safetensors)
#   llm       ask a language model for one; skipped, with a message, when none is configured
#             (llm.safetensors); LLM_REPLAY may be a directory of ALGO.json conversations
# and meta-tests every kernel that exists (KERNEL.eval.json).
es_study() {
    local algo=$1 d="$OUT/${2%%:*}" envs=${2#*:} step kernel
    shift 2
    mkdir -p "$d"
    stage "$d/es.safetensors" \
        metarl train es --algo "$algo" --envs "$envs" -o "$d/es.safetensors" "${ES[@]}" "${RL[@]}"
    for step in "$@"; do
        case "$step" in
        same | smaller)
            stage "$d/$step.safetensors" \
                metarl distil "$d/es.safetensors" --size "$step" -o "$d/$step.safetensors" \
                "${DISTIL[@]}" "${RL[@]}"
            ;;
        symbolic)
            stage "$d/symbolic.safetensors" \
                metarl symbolic "$d/es.safetensors" -o "$d/symbolic.safetensors" \
                "${SYMBOLIC[@]}" "${RL[@]}"
            ;;
        llm)
            if llm_configured; then
                local llm=("${LLM[@]}")
                # LLM_REPLAY=DIR: each algorithm replays DIR/ALGO.json (suppf.sh has three)
                if [ -d "${LLM_REPLAY:-}" ]; then llm=(--replay "$LLM_REPLAY/$algo.json"); fi
                stage "$d/llm.safetensors" \
                    metarl discover --algo "$algo" --envs "$envs" -o "$d/llm.safetensors" \
                    "${llm[@]}" "${DISCOVER[@]}" "${RL[@]}"
            fi
            ;;
        *)
            echo "error: es_study: unknown stage '$step' (same, smaller, symbolic or llm)" >&2
            exit 2
            ;;
        esac
    done
    for kernel in es "$@"; do
        if [ -e "$d/$kernel.safetensors" ]; then
            stage "$d/$kernel.eval.json" \
                metarl evaluate "$d/$kernel.safetensors" --algo "$algo" "${EVAL[@]}" \
                -o "$d/$kernel.eval.json"
        fi
    done
}

# ppo_and_report EVAL_JSON...: meta-tests PPO on the same environments and seeds
# ($OUT/ppo.eval.json), writes the report of EVAL_JSON... and PPO to $OUT/report/, and says
# where it is.
ppo_and_report() {
    stage "$OUT/ppo.eval.json" metarl evaluate ppo "${EVAL[@]}" -o "$OUT/ppo.eval.json"
    metarl report "$@" "$OUT/ppo.eval.json" -o "$OUT/report" --force "${REPORT[@]}"
    echo "report: $OUT/report/index.html (and report.md beside it); stage times: $OUT/stages.tsv"
}
