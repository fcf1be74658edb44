#!/usr/bin/env python3
# The expected RoPE frequencies of native/tests/test_nn_ops.cc (rope_inv_freq_scaling_matches_transformers) and
# test/rope-scaling.test.ts: python3 scripts/rope-scaling-reference.py (numpy only).
# transformers' _compute_llama3_parameters / _compute_linear_scaling_rope_parameters, transcribed with numpy float32
# (torch computes them on float32 tensors; python scalars are cast to the tensor's dtype)
import numpy as np, math, json, sys
def default(base, dim):
    return (np.float32(1.0) / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)))).astype(np.float32)
def llama3(base, dim, factor, low, high, old):
    inv = default(base, dim)
    low_w = old / low; high_w = old / high
    # number / tensor is torch's Tensor.__rtruediv__: self.reciprocal() * other (two float32 roundings)
    wavelen = (np.reciprocal(inv) * np.float32(2 * math.pi)).astype(np.float32)
    inv_l = np.where(wavelen > np.float32(low_w), inv / np.float32(factor), inv).astype(np.float32)
    smooth = ((np.reciprocal(wavelen) * np.float32(old) - np.float32(low)) / np.float32(high - low)).astype(np.float32)
    smoothed = ((np.float32(1) - smooth) * inv_l / np.float32(factor) + smooth * inv_l).astype(np.float32)
    med = ~(wavelen < np.float32(high_w)) & ~(wavelen > np.float32(low_w))
    return np.where(med, smoothed, inv_l).astype(np.float32)
# the third: where torch's reciprocal-then-multiply differs from one division (frequencies 22 and 23, by one ulp)
for args in [(10000.0, 8, 8.0, 1.0, 4.0, 1024), (500000.0, 64, 32.0, 1.0, 4.0, 8192), (10000.0, 64, 4.0, 1.0, 4.0, 8192)]:
    print(json.dumps({'args': args, 'invFreq': [float(x) for x in llama3(*args)]}))
print(json.dumps({'linear': [float(x) for x in (default(10000.0, 8) / np.float32(4.0)).astype(np.float32)]}))
