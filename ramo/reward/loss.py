"""The Bradley-Terry loss of a reward model on preference pairs.

Under the Bradley-Terry model P(chosen beats rejected) = sigmoid(r_chosen - r_rejected), so
the negative log-likelihood of the observed preferences is -logsigmoid(r_chosen - r_rejected),
averaged over pairs. logsigmoid rather than log(sigmoid(.)): the latter underflows to
log(0) = -inf once the model is confidently wrong, which is exactly when the gradient matters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                       margin: torch.Tensor | None = None,
                       center_rewards_coefficient: float | None = None) -> torch.Tensor:
    """mean(-logsigmoid(r_chosen - r_rejected - margin))
    + center_rewards_coefficient * mean((r_chosen + r_rejected) ** 2).

    r_chosen, r_rejected: [N] rewards of the two sides of N pairs.
    margin: None or [N]: how much the chosen side must win by (as in Llama 2's reward models
    and TRL's `margin` column); a pair labelled by rules with a large reward gap then pushes
    the model harder than a near tie.
    center_rewards_coefficient: None or a float; the second term (Eisenstein et al., 2023, as
    in TRL) pulls the rewards of each pair towards a zero sum. The loss above depends only on
    differences, so without it the rewards may drift to any offset; centred rewards can be
    compared across models and prompts.

    The arithmetic is done in float32 at least (rewards from a bf16 model included): a loss
    averaged in bf16 keeps 8 bits of mantissa and would round away small improvements.
    """
    if r_chosen.shape != r_rejected.shape or r_chosen.dim() != 1:
        raise ValueError(f"r_chosen and r_rejected must both be [N]; got "
                         f"{tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}")
    dtype = torch.promote_types(r_chosen.dtype, torch.float32)
    r_chosen, r_rejected = r_chosen.to(dtype), r_rejected.to(dtype)
    difference = r_chosen - r_rejected
    if margin is not None:
        if margin.shape != r_chosen.shape:
            raise ValueError(f"margin must be [N] = {tuple(r_chosen.shape)}; "
                             f"got {tuple(margin.shape)}")
        difference = difference - margin.to(device=difference.device, dtype=dtype)
    loss = -F.logsigmoid(difference).mean()
    if center_rewards_coefficient:
        loss = loss + center_rewards_coefficient * ((r_chosen + r_rejected) ** 2).mean()
    return loss
