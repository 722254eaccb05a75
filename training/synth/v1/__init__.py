"""Data engine v1: the first generators, kept bit-identical as the ablation baseline
(`data.synth_version=1`, `synth.GENERATORS`). Today's generators (v2) are the modules one level up."""
