"""Random numbers drawn where the arrays live: a device's dropout masks are made on the device.

The CPU draws its masks from NumPy's generator (backprop.random). A device draws none of its own state: each
mask gets one 64-bit key drawn on the host from the same generator (no device read, and a backup of the
generator's state is a backup of the device's draws too), and element ``i`` of the mask is a pure function of
the key and ``i``, SplitMix64's output function: ``z = key + (i + 1) * 0x9E3779B97F4A7C15``, then
``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31``, and the uniform
number is the top 24 bits of ``z`` times 2**-24 (exact in float32). On a GPU this is one CUDA kernel; any other
device (the strict one) computes the same integers with its array module, so both give the same masks. A device's
masks therefore differ from the CPU's for the same seed; each is reproducible from the seed alone.
"""
from backprop import devices
from backprop.xp import np

_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB

# The kernel computing ``dropout_scale``'s formula: a mask scaled by 1 / (1 - rate), in the input's dtype.
_KERNEL = ("uint64 key, float32 rate, T factor", "T scale", f"""
    unsigned long long z = key + (unsigned long long)(i + 1) * {_GOLDEN}ULL;
    z = (z ^ (z >> 30)) * {_MIX1}ULL;
    z = (z ^ (z >> 27)) * {_MIX2}ULL;
    z = z ^ (z >> 31);
    float u = (float)(z >> 40) * 5.9604644775390625e-08f;
    scale = u >= rate ? factor : (T)0;
""")


def dropout_scale(like, rate, generator):
    """An array shaped and typed like ``like``, on its device: 0 with probability ``rate``, else 1 / (1 - rate)."""
    key = int(generator.integers(2**63, dtype=np.uint64))
    factor = like.dtype.type(1 / (1 - rate))
    kernel = devices.elementwise_kernel(like, "dropout_scale", *_KERNEL)
    xp = devices.array_module(like)
    if kernel is not None:  # pragma: no cover - needs a GPU
        return kernel(np.uint64(key), np.float32(rate), factor, xp.empty(like.shape, like.dtype))
    return (uniform(xp, key, like.shape) >= np.float32(rate)).astype(like.dtype) * factor


def uniform(xp, key, shape):
    """The uniform float32 numbers in [0, 1) that ``key`` gives, as the kernel computes them (with ``xp``)."""
    z = (xp.arange(1, int(np.prod(shape)) + 1, dtype=np.uint64) * np.uint64(_GOLDEN)) + np.uint64(key)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)).reshape(shape)
