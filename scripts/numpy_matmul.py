"""Reference for the matmul benchmark: OpenBLAS through numpy on the same cores.
Run as: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 scripts/numpy_matmul.py"""
import time

import numpy as np

try:
    from threadpoolctl import threadpool_info

    print([(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()])
except ImportError:
    pass
for n in (512, 1024):
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    a @ b
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    s = (time.perf_counter() - t) / reps
    print(f"numpy matmul {n}: {2 * n**3 / s / 1e9:.1f} GFLOP/s")
