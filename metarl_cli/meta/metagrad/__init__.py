"""Meta-gradient learning of update rules (`metarl train metagrad`; Oh et al., 2020).

`config.py` (settings and the recorded decisions), `step.py` (the jitted, sharded meta-step),
`rundir.py` (checkpoints for exact resume), `train.py` (plan, loop, artefact).
"""
