"""Fitting a parsing model to one batch: the loop the model tests use to show their loss can go down."""
from __future__ import annotations

from typing import Any, Callable

import torch


def fit_one_batch(model: Any, batch: Any, steps: int, *, epoch: int = 1, lr: float = 3e-3,
                  optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam) -> list[tuple[float, dict]]:
    """`steps` optimiser steps of `model` (in its current train/eval mode) on `batch`; returns each step's
    (loss, named parts) as computed before that step's update."""
    opt = optimizer(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        loss, parts = model.loss(model(batch), batch, epoch)
        history.append((float(loss), parts))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return history


def loss_before_and_after(model: Any, batch: Any, steps: int, *, epoch: int = 1) -> tuple[float, float]:
    """The eval-mode loss of `model` on `batch` before and after `steps` train-mode Adam steps on it."""
    model.eval()
    before = float(model.loss(model(batch), batch, epoch)[0])
    model.train()
    fit_one_batch(model, batch, steps, epoch=epoch)
    model.eval()
    return before, float(model.loss(model(batch), batch, epoch)[0])
