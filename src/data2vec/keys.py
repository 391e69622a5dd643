"""Key-table machinery shared by every converter: template renaming with strict accounting, strict loading."""

from __future__ import annotations

import re

import torch


def _compile(table: dict[str, str]) -> list[tuple[re.Pattern, str]]:
    out = []
    for src, dst in table.items():
        pat = re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
        out.append((re.compile(pat + "$"), dst))
    return out


def map_keys(src: dict[str, torch.Tensor], table: dict[str, str], prefix_out: str = "") -> dict[str, torch.Tensor]:
    """Rename every key of ``src`` through ``table``; raise on any key the table does not cover."""
    compiled = _compile(table)
    out, unknown = {}, []
    for key, tensor in src.items():
        for pat, dst in compiled:
            m = pat.match(key)
            if m:
                out[prefix_out + dst.format(**m.groupdict())] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"checkpoint has keys the key table does not know: {unknown}")
    return out


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Strict load with shape checks and a message naming missing/unexpected keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
           for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or bad:
        raise ValueError(
            "checkpoint does not match the model:"
            + (f"\n  missing: {missing}" if missing else "")
            + (f"\n  unexpected: {unexpected}" if unexpected else "")
            + (f"\n  shape mismatch: {bad}" if bad else "")
        )
    model.load_state_dict(state, strict=True)
