"""Which INT8 backbone suits this CPU, from its flags in /proc/cpuinfo.

x86 CPUs without VNNI multiply u8 x s8 with a 16-bit saturating add (vpmaddubsw), so 8-bit
weights overflow there and quality collapses (24.15 instead of 25.38 dB on Rain100H-dev in the
issue-31 probe); onnxruntime's `reduce_range` (7-bit weights) avoids it. VNNI, AMX and Arm's
dot-product instructions accumulate in 32 bits, so 8-bit weights are exact there.
"""

import platform
from pathlib import Path

from contract.bundle import INT8_KEYS

CPUINFO = Path("/proc/cpuinfo")
# 32-bit accumulating int8 dot products: x86 VNNI (AVX-512 or AVX), AMX, Arm dot product
WIDE_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8", "asimddp"})
FULL_RANGE, REDUCED_RANGE = INT8_KEYS


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first processor's flags (x86 'flags', Arm 'Features'); empty when unreadable."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.strip().split("\n\n", 1)[0].splitlines():  # the first processor's block
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def int8_backbone_key(flags: frozenset[str]) -> str:
    """The bundle's manifest key of the INT8 backbone to run on a CPU with these flags."""
    return FULL_RANGE if flags & WIDE_INT8_FLAGS else REDUCED_RANGE


def describe(flags: frozenset[str]) -> str:
    """'x86_64 with avx512_vnni' or 'x86_64 without VNNI/AMX/dot-product': for logs and /readyz."""
    wide = sorted(flags & WIDE_INT8_FLAGS)
    return f"{platform.machine()} {'with ' + ', '.join(wide) if wide else 'without VNNI/AMX/dot-product'}"
