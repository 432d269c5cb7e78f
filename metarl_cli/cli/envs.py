"""`metarl envs`: list environments, aliases and their preset budgets."""

from __future__ import annotations

from typing import Annotated

import typer

from metarl_cli.cli._output import out, print_json


def envs(
    json_: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the environments with their aliases and the paper's preset sizes."""
    from metarl_cli.config import normaliser_note, preset
    from metarl_cli.envs import ENVS

    aliases: dict[str, list[str]] = {}
    for alias, env_id in ENVS.aliases().items():
        aliases.setdefault(env_id, []).append(alias)
    rows = []
    for env_id in ENVS.names():
        p = preset(env_id)
        rows.append(
            dict(
                env_id=env_id,
                aliases=aliases.get(env_id, []),
                description=ENVS.get(env_id).description,
                num_envs=p["num_envs"],
                num_steps=p["num_steps"],
                total_timesteps=p["total_timesteps"],
                lr=p["lr"],
                ppo_normaliser=p["ppo_normaliser"],
                ppo_normaliser_note=normaliser_note(env_id, "ppo"),
                sgd_normaliser=p["sgd_normaliser"],
                sgd_normaliser_note=normaliser_note(env_id, "sgd"),
                brax_backend=p.get("brax_backend"),
            )
        )
    if json_:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="environments")
    for col in ("id", "aliases", "envs x steps", "preset budget", "Adam lr", "PPO normaliser"):
        table.add_column(col, no_wrap=col == "id")
    notes: list[str] = []
    for r in rows:
        norm = "-" if r["ppo_normaliser"] is None else f"{r['ppo_normaliser']:g}"
        for kind in ("ppo", "sgd"):
            if r[f"{kind}_normaliser_note"] and r["ppo_normaliser"] is not None:
                norm += "*"
                break
        table.add_row(
            r["env_id"],
            ", ".join(r["aliases"]),
            f"{r['num_envs']} x {r['num_steps']}",
            f"{r['total_timesteps']:.0e}",
            f"{r['lr']:g}",
            norm,
        )
        for kind in ("ppo", "sgd"):
            if r[f"{kind}_normaliser_note"]:
                notes.append(f"{r['env_id']} {kind.upper()}: {r[f'{kind}_normaliser_note']}")
    out.print(table)
    if notes:
        out.print("normalisers that are not measured returns (* above):")
        for note in notes:
            out.print(f"  {note}", markup=False)
    out.print("Brax runs on the positional backend (the paper's); its normalisers hold there only.")
