"""The TAP network: a prompt-steered restoration backbone and a degradation encoder (torch only)."""

from model.net import CLEAN_CLASS, NET_VARIANTS, NetConfig, TAPNet

__all__ = ["CLEAN_CLASS", "NET_VARIANTS", "NetConfig", "TAPNet"]
