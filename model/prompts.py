"""Low-rank task prompts and how they steer backbone features.

For task t at prompted level l:  P[t,l] = G[l] + U[l] @ S[t,l] @ V[l]
  G (L x C) task-general prompt, U (L x r) and V (r x C) task-general bases,
  S (r x r) task-specific core. All cores of a task, flattened, are its prompt vector.
Because P is affine in S, a convex mixture of prompt vectors is a valid prompt.

The "full" mode (an ablation) drops the shared bases: P[t,l] = G[l] + D[t,l] with a free
dense (L x C) task part, so its prompt vector is L*C numbers per level.
"""

import math

import torch
from torch import nn

from model.blocks import LayerNorm2d

PROMPT_MODES = ("lowrank", "full")


class PromptLevel(nn.Module):
    """Task-general factors of one level plus the prompt-to-feature cross-attention.

    Each pixel attends over the L prompt tokens; the result is projected and added to
    the features with a zero-initialized scale, so an untrained level is the identity.
    """

    def __init__(self, channels: int, tokens: int, rank: int, mode: str = "lowrank") -> None:
        super().__init__()
        if mode not in PROMPT_MODES:
            raise ValueError(f"prompt mode must be one of {PROMPT_MODES}, got {mode!r}")
        self.rank, self.tokens, self.channels, self.mode = rank, tokens, channels, mode
        self.general = nn.Parameter(torch.randn(tokens, channels) * 0.02)  # G: (L, C)
        if mode == "lowrank":
            self.basis_u = nn.Parameter(torch.randn(tokens, rank) / math.sqrt(rank))  # U: (L, r)
            self.basis_v = nn.Parameter(torch.randn(rank, channels) / math.sqrt(rank))  # V: (r, C)
        self.norm = LayerNorm2d(channels)
        self.query = nn.Conv2d(channels, channels, 1)
        self.value = nn.Linear(channels, channels)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @property
    def core_size(self) -> int:
        return self.rank * self.rank if self.mode == "lowrank" else self.tokens * self.channels

    def build(self, cores: torch.Tensor) -> torch.Tensor:
        """Prompt tokens from task cores: (N, core_size) -> (N, L, C)."""
        if self.mode == "full":
            return self.general + cores.reshape(-1, self.tokens, self.channels)
        s = cores.reshape(-1, self.rank, self.rank)  # (N, r, r)
        return self.general + self.basis_u @ s @ self.basis_v

    def forward(self, feat: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        n, c, h, w = feat.shape
        q = self.query(self.norm(feat)).flatten(2)  # (N, C, HW)
        attn = torch.softmax(prompt @ q / math.sqrt(c), dim=1)  # (N, L, HW)
        out = self.value(prompt).transpose(1, 2) @ attn  # (N, C, HW)
        return feat + self.proj(out.reshape(n, c, h, w)) * self.scale


class PromptBank(nn.Module):
    """All prompted levels and the per-task cores (one parameter per task, so tasks can be added)."""

    def __init__(self, channels: list[int], tokens: int, rank: int, tasks: list[str], mode: str = "lowrank") -> None:
        super().__init__()
        self.levels = nn.ModuleList(PromptLevel(c, tokens, rank, mode) for c in channels)
        self.cores = nn.ParameterDict()
        for task in tasks:
            self.add_task(task)

    @property
    def prompt_dim(self) -> int:
        return sum(level.core_size for level in self.levels)

    @property
    def tasks(self) -> list[str]:
        return list(self.cores.keys())

    def add_task(self, task: str, init: torch.Tensor | None = None) -> None:
        if task in self.cores:
            raise ValueError(f"task {task!r} already exists")
        vec = init.clone() if init is not None else torch.randn(self.prompt_dim) * 0.1
        self.cores[task] = nn.Parameter(vec.reshape(self.prompt_dim))

    def task_vectors(self, tasks: list[str] | None = None) -> torch.Tensor:
        """Prompt vectors (T, D) in the order of `tasks` (default: all)."""
        return torch.stack([self.cores[t] for t in (tasks or self.tasks)])

    def split(self, prompt_vec: torch.Tensor) -> list[torch.Tensor]:
        """(N, D) prompt vectors -> one (N, L, C) prompt per level."""
        chunks = prompt_vec.split([level.core_size for level in self.levels], dim=1)
        return [level.build(chunk) for level, chunk in zip(self.levels, chunks, strict=True)]
